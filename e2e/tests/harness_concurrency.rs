//! Optimistic concurrency: two writers updating one object with read-modify-write get 409
//! Conflicts, retry, and never lose an update.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Barrier};

use e2e::apiserver::ApiServer;
use e2e::apiserver::testing::{raw, raw_json};
use serde_json::json;

const PATH: &str = "/api/v1/namespaces/default/configmaps/counter";
const ROUNDS: u64 = 150;
const LOCKSTEP: u64 = 10;

/// Increments `data.n` ROUNDS times; the first LOCKSTEP attempts read in lockstep with the
/// other writer (both read, then both write), so conflicts are certain. Returns how many 409s
/// it saw.
fn writer(url: String, barrier: Arc<Barrier>) -> u64 {
    let mut conflicts = 0;
    let mut attempt = 0;
    for _ in 0..ROUNDS {
        loop {
            let lockstep = attempt < LOCKSTEP;
            attempt += 1;
            let cur = raw(&url, "GET", PATH, &[], b"").unwrap().json();
            if lockstep {
                barrier.wait();
            }
            let n: u64 = cur["data"]["n"].as_str().unwrap().parse().unwrap();
            let mut next = cur.clone();
            next["data"]["n"] = json!((n + 1).to_string());
            let r = raw_json(&url, "PUT", PATH, "application/json", &next).unwrap();
            if lockstep {
                barrier.wait();
            }
            match r.code {
                200 => break,
                409 => {
                    assert_eq!(r.json()["reason"], "Conflict");
                    conflicts += 1;
                }
                other => panic!("unexpected {other}: {}", r.json()),
            }
        }
    }
    conflicts
}

#[test]
fn two_writers_conflict_and_never_lose_an_update() {
    let srv = ApiServer::start().unwrap();
    let url = srv.url().to_string();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "counter"}, "data": {"n": "0"}});
    assert_eq!(
        raw_json(
            &url,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            &cm
        )
        .unwrap()
        .code,
        201
    );
    let barrier = Arc::new(Barrier::new(2));
    let a = std::thread::spawn({
        let (u, b) = (url.clone(), barrier.clone());
        move || writer(u, b)
    });
    let b = std::thread::spawn({
        let (u, b) = (url.clone(), barrier.clone());
        move || writer(u, b)
    });
    let conflicts = a.join().unwrap() + b.join().unwrap();
    let n: u64 = raw(&url, "GET", PATH, &[], b"").unwrap().json()["data"]["n"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(n, 2 * ROUNDS, "an update was lost");
    assert!(
        conflicts >= LOCKSTEP,
        "lockstep rounds must conflict, saw {conflicts}"
    );
}
