//! The parts of `sqitch.conf` (git-config syntax) that change where things live.
