//! Tests for the plan reader, by topic. Expected ids and Sqitch's reading of odd lines
//! were obtained once from the installed Sqitch 1.3.1 (`App::Sqitch::Plan` driven by a
//! small Perl script, and `sqitch plan --format raw`), then hard-coded here.

mod find {
    //! `Plan::find`: Sqitch's change lookup (`index_of`), checked against Sqitch 1.3.1 on the
    //! same plan.

    use crate::project::FindError;
    use crate::project::testing::{body, plan};

    #[test]
    fn targets_resolve_like_sqitchs_index_of() {
        let plan = plan(&body(&[
            "a {}",
            "b {}",
            "@v1 {}",
            "@v1b {}",
            "c {}",
            "@v2 {}",
            "a [a@v1] {}",
        ]));
        let b_id = plan.changes[1].id.clone();
        let v2_id = plan.changes[2].tags[0].id.clone();
        let at_b_id = format!("{b_id}@v2");
        let at_tag_id = format!("@{v2_id}");
        struct Case<'a> {
            target: &'a str,
            want: Option<usize>,
        }
        let cases = [
            Case {
                target: "a",
                want: None,
            },
            Case {
                target: "a@v1",
                want: Some(0),
            },
            Case {
                target: "a@v2",
                want: Some(0),
            },
            Case {
                target: "a@v1b",
                want: Some(0),
            },
            Case {
                target: "a@HEAD",
                want: Some(3),
            },
            Case {
                target: "a@ROOT",
                want: Some(0),
            },
            Case {
                target: "@v1",
                want: Some(1),
            },
            Case {
                target: "@v1b",
                want: Some(1),
            },
            Case {
                target: "@v2",
                want: Some(2),
            },
            Case {
                target: "@HEAD",
                want: Some(3),
            },
            Case {
                target: "HEAD",
                want: Some(3),
            },
            Case {
                target: "@ROOT",
                want: Some(0),
            },
            Case {
                target: "ROOT",
                want: Some(0),
            },
            Case {
                target: "b",
                want: Some(1),
            },
            Case {
                target: "c",
                want: Some(2),
            },
            Case {
                target: &b_id,
                want: Some(1),
            },
            Case {
                target: &v2_id,
                want: Some(2),
            },
            Case {
                target: &at_b_id,
                want: Some(1),
            },
            Case {
                target: &at_tag_id,
                want: None,
            },
            Case {
                target: "a@nope",
                want: None,
            },
            Case {
                target: "nope",
                want: None,
            },
            Case {
                target: "@nope",
                want: None,
            },
            Case {
                target: "@HEAD^",
                want: Some(2),
            },
            Case {
                target: "HEAD^^",
                want: Some(1),
            },
            Case {
                target: "@HEAD~",
                want: None,
            },
            Case {
                target: "@ROOT~2",
                want: Some(2),
            },
            Case {
                target: "b^",
                want: Some(0),
            },
            Case {
                target: "b~",
                want: Some(2),
            },
            Case {
                target: "@v1^1",
                want: Some(0),
            },
            Case {
                target: "c~~",
                want: None,
            },
            Case {
                target: "c^^",
                want: Some(0),
            },
            Case {
                target: "b^0",
                want: Some(1),
            },
            Case {
                target: "HEAD@v1",
                want: None,
            },
        ];
        for case in cases {
            assert_eq!(plan.find(case.target), case.want, "{:?}", case.target);
        }
    }

    #[test]
    fn resolve_says_why_a_target_is_not_found() {
        let plan = plan(&body(&["a {}", "@v1 {}"]));
        assert_eq!(
            plan.resolve("a@nope"),
            Err(FindError::UnknownTag("nope".into()))
        );
        assert_eq!(
            plan.resolve("zz").map_err(|e| e.to_string()),
            Err("cannot find change \"zz\" in the plan".into())
        );
        assert_eq!(plan.resolve("a@v1"), Ok(0));
    }

    #[test]
    fn nothing_is_found_in_an_empty_plan() {
        let plan = plan("%project=x\n");
        assert!(plan.changes.is_empty());
        assert_eq!(plan.find("@HEAD"), None);
        assert_eq!(plan.find("ROOT"), None);
    }
}

mod ids {
    //! Change and tag ids, which must equal Sqitch's so both tools agree about one registry.
    //!
    //! Expected ids come from Sqitch 1.3.1: each plan below was written to a project with
    //! `[core] engine = pg` and read with `App::Sqitch::Target->new(...)->plan`, printing
    //! `$change->id` and `$tag->id` (the change ids also match `sqitch plan --format raw`).

    use crate::project::plan::change_info;
    use crate::project::testing::plan;

    /// The Sqitch tutorial's opening, plus everything that goes into an id: `%uri`, notes with
    /// escapes and Unicode, requires and conflicts (own and other projects), a planner name with
    /// extra blanks, several tags on one change, a note of `0`, and a rework.
    const FLIPR: &str = "%syntax-version=1.0.0
    %project=flipr
    %uri=https://github.com/sqitchers/sqitch-intro/

    appschema 2012-07-27T19:18:00Z Marge N. O’Vera <marge@example.com> # Add schema for all flipr objects.
    users [appschema] 2012-07-27T21:17:09Z Marge N. O’Vera <marge@example.com> # Creates table to track our users.
    @v1.0.0-dev1 2012-07-28T19:12:08Z Marge N. O’Vera <marge@example.com> # Tag v1.0.0-dev1.\\nWith a second line.

    flips [appschema users !legacy other:thing other:@t2 users@v1.0.0-dev1] 2012-07-28T20:03:43Z Marge  Two  Spaces   <marge@example.com> # Ünïcödé note with \\\\ backslash, \\n newline and \\r return, and \\t stays
    @v1.0.0-dev2 2012-07-29T00:00:00Z Marge N. O’Vera <marge@example.com>
    @v1.0.0-dev3 2012-07-29T00:00:01Z Marge N. O’Vera <marge@example.com> # 0

    users [users@v1.0.0-dev1] 2012-07-30T00:00:00Z Marge N. O’Vera <marge@example.com> # Rework users.
    ";

    #[test]
    fn change_and_tag_ids_match_sqitch() {
        let plan = plan(FLIPR);
        let ids: Vec<(&str, &str)> = plan
            .changes
            .iter()
            .map(|c| (c.name.as_str(), c.id.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("appschema", "e301cde5ab07427dc980ac3b88b3205669921f0e"),
                ("users", "7c7d39affa1912aadeb67e21d301d340bf6f3752"),
                ("flips", "05ff08ebe0945c348e8688eb232dafb6ceb3a9ae"),
                ("users", "8443ff1f98f0e41767ee66f81ea0a0284e93f8fe"),
            ]
        );
        let tags: Vec<(&str, &str)> = plan
            .changes
            .iter()
            .flat_map(|c| &c.tags)
            .map(|t| (t.name.as_str(), t.id.as_str()))
            .collect();
        assert_eq!(
            tags,
            [
                ("v1.0.0-dev1", "e2549b5fc9de7959e1991306e44e62b65da9a45e"),
                ("v1.0.0-dev2", "1a9378a9c1058366d4bda713c9c18f31783d19f6"),
                ("v1.0.0-dev3", "f42bd74570236eb3c3e258196c74fc2550792e44"),
            ]
        );
    }

    #[test]
    fn ids_use_the_canonical_uri() {
        let text = FLIPR.replace(
            "%uri=https://github.com/sqitchers/sqitch-intro/",
            "%uri=HTTPS://GitHub.COM:443/a%7e/b%2f c?x=%41",
        );
        let plan = plan(&text);
        assert_eq!(
            plan.uri.as_deref(),
            Some("HTTPS://GitHub.COM:443/a%7e/b%2f%20c?x=%41"),
            "as sqitch registers it"
        );
        assert_eq!(
            plan.uri_canonical().as_deref(),
            Some("https://github.com/a~/b%2F%20c?x=A")
        );
        assert_eq!(
            plan.changes[0].id,
            "6ee7f505d0250c1827509e52e91e4e5378be6e6f"
        );
        assert_eq!(
            plan.changes[1].id,
            "1dc2aca36690e4afc6ceddbcd69e74bf38e67bf7"
        );
        assert_eq!(
            plan.changes[1].tags[0].id,
            "cb004af5c6e0b056e5712929670e447e6b066038"
        );
    }

    #[test]
    fn each_id_covers_the_change_before_it() {
        // Sqitch's info names the previous change as `parent`; the same change after another
        // change gets another id.
        let alone = plan("%project=p1\n\nb 2024-01-02T00:00:00Z Marge <m@x.org>\n");
        let second = plan(
            "%project=p1\n\na 2024-01-01T00:00:00Z Marge <m@x.org>\nb 2024-01-02T00:00:00Z Marge <m@x.org>\n",
        );
        let after = plan(
            "%project=p1\n\na 2024-01-01T00:00:00Z Marge <m@x.org> # first\nb [a] 2024-01-02T00:00:00Z Marge <m@x.org>\n@v1 2024-01-03T00:00:00Z Marge <m@x.org> # tag note\n",
        );
        assert_eq!(
            after.changes[0].id,
            "5df0a0a12afc175936ef7d151dcadda419a9afb2"
        );
        assert_eq!(
            after.changes[1].id,
            "0f2672a3529e65a5e4d900cccbe7c9e91dd8ccac"
        );
        assert_eq!(
            after.changes[1].tags[0].id,
            "a01d1c7bc0250ffc9206e83afcd93e0847255c71"
        );
        assert_ne!(alone.changes[0].id, second.changes[1].id);
    }

    #[test]
    fn info_text_has_sqitchs_layout() {
        let plan = plan(FLIPR);
        let flips = &plan.changes[2];
        let info = change_info(
            &plan.project,
            plan.uri_canonical().as_deref(),
            flips,
            Some(&plan.changes[1].id),
        );
        assert_eq!(
            info,
            "project flipr\n\
             uri https://github.com/sqitchers/sqitch-intro/\n\
             change flips\n\
             parent 7c7d39affa1912aadeb67e21d301d340bf6f3752\n\
             planner Marge  Two  Spaces   <marge@example.com>\n\
             date 2012-07-28T20:03:43Z\n\
             requires\n  + appschema\n  + users\n  + other:thing\n  + other:@t2\n  + users@v1.0.0-dev1\n\
             conflicts\n  - legacy\n\
             \n\
             Ünïcödé note with \\ backslash, \n newline and \r return, and \\t stays"
        );
    }

    #[test]
    fn a_note_of_zero_is_left_out_of_the_id_like_sqitch() {
        let with_zero = plan("%project=x\n\na 2024-01-01T00:00:00Z M <m@x> # 0\n");
        let without = plan("%project=x\n\na 2024-01-01T00:00:00Z M <m@x>\n");
        assert_eq!(with_zero.changes[0].note, "0");
        assert_eq!(with_zero.changes[0].id, without.changes[0].id);
        assert_eq!(
            without.changes[0].id,
            "53bd43b6bacf65d4f41890d2cdffed33d784ac0c"
        );
    }

    #[test]
    fn own_project_prefix_is_dropped_in_ids_and_strings() {
        // `[x:a]` in project x is the same dependency as `[a]`.
        let prefixed = plan(
            "%project=x\n\na 2024-01-01T00:00:00Z M <m@x>\nb [x:a] 2024-01-01T00:00:00Z M <m@x>\n",
        );
        assert_eq!(
            prefixed.changes[1].id,
            "5d5f5e9b273cda898ddb0115ec0b2fc76a7b8322"
        );
        assert_eq!(prefixed.changes[1].requires[0].as_string("x"), "a");
    }

    #[test]
    fn cross_project_ids_are_kept_in_dependencies() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        let plan = plan(&format!(
            "%project=x\n\na 2024-01-01T00:00:00Z M <m@x>\nb [y:{id}] 2024-01-01T00:00:00Z M <m@x>\n"
        ));
        assert_eq!(
            plan.changes[1].requires[0].as_string("x"),
            format!("y:{id}")
        );
        assert_eq!(
            plan.changes[1].id,
            "ff5e830111fac26aa07721cd699c7863c9bc8323"
        );
    }

    #[test]
    fn unicode_names_hash_their_utf8_bytes() {
        let plan = plan(
            "%project=x\n\ncafé 2024-01-01T00:00:00Z M <m@x> # note ünï \\n line2 \\\\ back \\r \\t\n",
        );
        assert_eq!(plan.changes[0].note, "note ünï \n line2 \\ back \r \\t");
        assert_eq!(
            plan.changes[0].id,
            "7906804eb3a088d3cf411acdc46fdb7a710dd48b"
        );
    }
}

mod large {
    //! A generated 10,000-change plan: parsed and validated correctly, with nothing quadratic
    //! in the way (no timing asserts; `cargo test --release` shows the time with --nocapture).

    use std::collections::HashSet;
    use std::fmt::Write;

    use crate::project::testing::plan;

    /// 10,000 changes: each requires the one planned before it, a tag every 100 changes, a change@tag
    /// dependency after each tag, and `c50` reworked in every section.
    fn generated() -> String {
        let mut text =
            String::from("%syntax-version=1.0.0\n%project=big\n%uri=https://example.com/big\n\n");
        let mut previous = String::new();
        for i in 0..10_000 {
            let mut deps = Vec::new();
            if i > 0 {
                deps.push(previous.clone());
            }
            if i >= 100 && i % 100 == 1 {
                deps.push(format!("c{}@t{}", i - 2, i / 100 - 1));
                deps.push(format!("!other:c{i}"));
            }
            let deps = if deps.is_empty() {
                String::new()
            } else {
                format!("[{}] ", deps.join(" "))
            };
            // The 50th change of every section reworks `c50`.
            let name = if i % 100 == 50 {
                "c50".to_owned()
            } else {
                format!("c{i}")
            };
            let _ = writeln!(
                text,
                "{name} {deps}2024-01-01T00:00:00Z Planner <p@example.com> # change {i}"
            );
            previous = name;
            if i % 100 == 99 {
                let _ = writeln!(
                    text,
                    "@t{} 2024-01-02T00:00:00Z Planner <p@example.com>",
                    i / 100
                );
            }
        }
        text
    }

    #[test]
    fn a_ten_thousand_change_plan_parses_and_validates() {
        let text = generated();
        let started = std::time::Instant::now();
        let plan = plan(&text);
        println!("parsed 10,000 changes in {:?}", started.elapsed());
        assert_eq!(plan.changes.len(), 10_000);
        assert_eq!(
            plan.changes.iter().map(|c| c.tags.len()).sum::<usize>(),
            100
        );
        let ids: HashSet<&str> = plan.changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), 10_000, "ids are unique");
        let reworked = plan.changes.iter().filter(|c| c.is_reworked()).count();
        assert_eq!(reworked, 99);
        assert_eq!(plan.changes[50].script_file, "c50@t0.sql");
        assert_eq!(plan.changes[150].name, "c50");
        assert_eq!(
            plan.changes[150].parent.as_deref(),
            Some(plan.changes[50].id.as_str())
        );
        assert_eq!(plan.find("@t99"), Some(9_999));
        assert_eq!(plan.find("c50@t0"), Some(50));
        assert_eq!(plan.changes[9_999].line, 10_000 + 99 + 4);
    }
}

mod rework {
    //! Reworked changes: a name planned again after a tag. Expected ids and script files come
    //! from Sqitch 1.3.1 (`$change->id`, `$change->deploy_file`).

    use crate::project::FindError;
    use crate::project::testing::{body, failure, plan};

    /// `a` is reworked after three tags on two changes.
    fn reworked_after_tags() -> String {
        body(&[
            "a {}",
            "b {}",
            "@v1 {}",
            "@v1b {}",
            "c {}",
            "@v2 {}",
            "a [a@v1] {}",
        ])
    }

    #[test]
    fn earlier_instance_uses_the_newest_tag_script_by_default() {
        let plan = plan(&reworked_after_tags());
        let a = &plan.changes[0];
        assert_eq!(
            a.rework_tags,
            ["v2", "v1", "v1b"],
            "tags between the instances newest first, then its own"
        );
        assert!(a.is_reworked());
        assert_eq!(a.script_file, "a@v2.sql");
        assert_eq!(plan.changes[3].script_file, "a.sql");
        assert!(!plan.changes[3].is_reworked());
    }

    #[test]
    fn earlier_instance_uses_the_first_tag_script_that_exists() {
        let mut plan = plan(&reworked_after_tags());
        plan.resolve_scripts("sql", |file| file == "a@v1b.sql" || file == "a@v1.sql");
        assert_eq!(plan.changes[0].script_file, "a@v1.sql");
        plan.resolve_scripts("sql", |file| file == "a@v1b.sql");
        assert_eq!(plan.changes[0].script_file, "a@v1b.sql");
        plan.resolve_scripts("ddl", |_| false);
        assert_eq!(plan.changes[0].script_file, "a@v2.ddl");
        assert_eq!(plan.changes[3].script_file, "a.ddl");
    }

    #[test]
    fn reworked_ids_and_parents_match_sqitch() {
        let plan = plan(&reworked_after_tags());
        let ids: Vec<&str> = plan.changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "53bd43b6bacf65d4f41890d2cdffed33d784ac0c",
                "eb1b06931066dd00f857a7a158685c256cf20287",
                "21e30140e8c703eb80aa260b1485362e34c561c4",
                "9df9372ad8b72bdc1c5693a5a46701dea9af1b2b",
            ]
        );
        let tags: Vec<&str> = plan
            .changes
            .iter()
            .flat_map(|c| &c.tags)
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(
            tags,
            [
                "bb66a3bf502845a1a6ee442c81909c41e1474a0e",
                "073f4956355f7690f5c3350db6b8e938fe7a7baf",
                "37cad0e23fc9a1e178c0e92eceecd4479e371107",
            ]
        );
        assert_eq!(
            plan.changes[3].parent.as_deref(),
            Some(ids[0]),
            "parent is the reworked instance"
        );
        assert_eq!(plan.changes[0].parent, None);
        assert_eq!(plan.changes[1].parent, None, "not a rework");
    }

    #[test]
    fn a_change_reworked_twice_has_one_script_per_instance() {
        let plan = plan(&body(&["a {}", "@v1 {}", "a {}", "@v2 {}", "a {}"]));
        let files: Vec<&str> = plan
            .changes
            .iter()
            .map(|c| c.script_file.as_str())
            .collect();
        assert_eq!(files, ["a@v1.sql", "a@v2.sql", "a.sql"]);
        let ids: Vec<&str> = plan.changes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "53bd43b6bacf65d4f41890d2cdffed33d784ac0c",
                "51d1e75cdd2f5af33e3fcdb5fb226c5262dcd6b3",
                "d2c2019359761601bf07d767c7e98d5e6fff335d",
            ]
        );
        assert_eq!(plan.changes[1].parent.as_deref(), Some(ids[0]));
        assert_eq!(plan.changes[2].parent.as_deref(), Some(ids[1]));
        assert_eq!(
            plan.changes[0].tags[0].id,
            "f499dbac0fcf5fc20b389fc0de2a278183d21a48"
        );
        assert_eq!(
            plan.changes[1].tags[0].id,
            "0d5bf43b5ddffb3fdb118a9edcdb852f5c7e8a85"
        );
    }

    #[test]
    fn names_with_slashes_put_the_tag_on_the_file_name() {
        let plan = plan(&body(&["s/a/b {}", "@v1 {}", "s/a/b {}"]));
        assert_eq!(plan.changes[0].script_file, "s/a/b@v1.sql");
        assert_eq!(plan.changes[1].script_file, "s/a/b.sql");
        assert_eq!(
            plan.changes[0].id,
            "f60a5d6c35484a6c499cb8b67ab2fbc98fe183fc"
        );
        assert_eq!(
            plan.changes[1].id,
            "6d9dc0debac560bad4458f174bd1f3534974502f"
        );
        assert_eq!(
            plan.changes[0].tags[0].id,
            "20d216f4df76f33071dd77fda93d2412f7d17f25"
        );
    }

    #[test]
    fn a_rework_may_require_its_own_name() {
        // Sqitch accepts `[a]` on the new instance: the earlier one is already planned.
        let plan = plan(&body(&["a {}", "@v1 {}", "a [a] {}"]));
        assert_eq!(
            plan.changes[1].id,
            "b0244cae432c751668fab18da4ab2d174c3ad458"
        );
    }

    #[test]
    fn a_rework_needs_a_tag_in_between() {
        let (line, message) = failure(&body(&["a {}", "b {}", "a {}"]));
        assert_eq!(line, Some(5));
        assert!(
            message.starts_with("change \"a\" duplicates earlier declaration on line 3"),
            "{message}"
        );
    }

    #[test]
    fn a_reworked_name_alone_is_ambiguous() {
        let plan = plan(&reworked_after_tags());
        assert_eq!(plan.find("a"), None);
        assert_eq!(
            plan.resolve("a"),
            Err(FindError::Ambiguous {
                name: "a".into(),
                candidates: vec!["a@HEAD".into(), "a@v2".into()]
            })
        );
        assert_eq!(
            plan.resolve("a").map_err(|e| e.to_string()),
            Err("change \"a\" is ambiguous; use a tag-qualified name: a@HEAD, a@v2".into())
        );
    }
}

mod validation {
    //! Every way a plan can be invalid: each error names the plan file and the exact line
    //! (`failure` checks the file). Cases marked "sqitch:" are Sqitch 1.3.1's own rules;
    //! "switchyard:" marks rules stricter than Sqitch's.

    use crate::project::testing::{HEADER, TAIL, body, failure, parse, plan};

    struct Case {
        name: &'static str,
        /// Lines after the header; `{}` becomes a timestamp and planner.
        lines: &'static [&'static str],
        want_line: usize,
        /// The start of the message.
        want: &'static str,
    }

    #[test]
    fn invalid_plans_name_the_line() {
        let cases = [
            Case {
                name: "sqitch: reserved change name",
                lines: &["HEAD {}"],
                want_line: 3,
                want: "\"HEAD\" is a reserved name",
            },
            Case {
                name: "sqitch: reserved tag name",
                lines: &["a {}", "@ROOT {}"],
                want_line: 4,
                want: "\"@ROOT\" is a reserved name",
            },
            Case {
                name: "sqitch: names must not look like ids",
                lines: &["0123456789abcdef0123456789abcdef01234567x {}"],
                want_line: 3,
                want: "\"0123456789abcdef0123456789abcdef01234567x\" is invalid because it could be confused with a sha1 id",
            },
            Case {
                name: "sqitch: tags cannot hold a slash",
                lines: &["a {}", "@v/1a {}"],
                want_line: 4,
                want: "tag \"@v/1a\" contains illegal character /",
            },
            Case {
                name: "sqitch: a tag needs a change before it",
                lines: &["@v1 {}"],
                want_line: 3,
                want: "tag \"@v1\" declared without a preceding change",
            },
            Case {
                name: "sqitch: duplicate tag",
                lines: &["a {}", "@t {}", "b {}", "@t {}"],
                want_line: 6,
                want: "tag \"@t\" duplicates earlier declaration on line 4",
            },
            Case {
                name: "sqitch: tags take no dependencies",
                lines: &["a {}", "@t [a] {}"],
                want_line: 4,
                want: "tags may not specify dependencies",
            },
            Case {
                name: "sqitch: duplicate change without a tag in between",
                lines: &["a {}", "b {}", "a {}"],
                want_line: 5,
                want: "change \"a\" duplicates earlier declaration on line 3",
            },
            Case {
                name: "sqitch: duplicate dependency",
                lines: &["a {}", "b [a a] {}"],
                want_line: 4,
                want: "duplicate dependency \"a\"",
            },
            Case {
                name: "sqitch: malformed dependency",
                lines: &["a {}", "b [a@] {}"],
                want_line: 4,
                want: "\"a@\" is not a valid dependency specification",
            },
            Case {
                name: "sqitch: dependency naming nothing",
                lines: &["a {}", "b [!] {}"],
                want_line: 4,
                want: "\"!\" is not a valid dependency specification",
            },
            Case {
                name: "sqitch: unknown change",
                lines: &["a {}", "b [zz] {}"],
                want_line: 4,
                want: "change \"b\" requires unknown change \"zz\"",
            },
            Case {
                name: "sqitch: unknown tag",
                lines: &["a {}", "b [@zz] {}"],
                want_line: 4,
                want: "change \"b\" requires unknown change \"@zz\"",
            },
            Case {
                name: "sqitch: change at an unknown tag",
                lines: &["a {}", "b [a@zz] {}"],
                want_line: 4,
                want: "change \"b\" requires unknown change \"a@zz\"",
            },
            Case {
                name: "sqitch: own project prefix is checked",
                lines: &["a {}", "b [x:zz] {}"],
                want_line: 4,
                want: "change \"b\" requires unknown change \"zz\"",
            },
            Case {
                name: "sqitch: an own-project id is looked up by name and never found",
                lines: &["a {}", "b [x:0123456789abcdef0123456789abcdef01234567] {}"],
                want_line: 4,
                want: "change \"b\" requires unknown change \"0123456789abcdef0123456789abcdef01234567\"",
            },
            Case {
                name: "sqitch: @ROOT and @HEAD are not dependencies",
                lines: &["a {}", "b [@ROOT] {}"],
                want_line: 4,
                want: "change \"b\" requires unknown change \"@ROOT\"",
            },
            Case {
                name: "sqitch: self dependency",
                lines: &["a [a] {}"],
                want_line: 3,
                want: "change \"a\" cannot require itself",
            },
            Case {
                name: "sqitch: a change may only require earlier changes",
                lines: &["a [c] {}", "b {}", "c {}"],
                want_line: 3,
                want: "change \"a\" requires \"c\", which is planned 2 changes later; move \"a\" below it",
            },
            Case {
                name: "sqitch: a cycle shows as a forward reference",
                lines: &["a [b] {}", "b [a] {}"],
                want_line: 3,
                want: "change \"a\" requires \"b\", which is planned 1 change later",
            },
            Case {
                name: "sqitch: a forward reference past a tag is unknown",
                lines: &["a [b] {}", "@t {}", "b {}"],
                want_line: 3,
                want: "change \"a\" requires unknown change \"b\"",
            },
            Case {
                name: "sqitch: change@tag needs the change before the tag",
                lines: &["a {}", "@t {}", "b [c@t] {}", "c {}"],
                want_line: 5,
                want: "change \"b\" requires unknown change \"c@t\"",
            },
            Case {
                // NB: Sqitch compares with the line of the newest instance, so this valid-looking
                // dependency is refused. Matched so that both tools accept the same plans.
                name: "sqitch: change@tag after the change was reworked",
                lines: &["a {}", "@t {}", "a {}", "@u {}", "b [a@t] {}"],
                want_line: 7,
                want: "change \"b\" requires unknown change \"a@t\"",
            },
            Case {
                // Sqitch 1.3 loops forever resolving such an id.
                name: "switchyard: dependency on a bare id",
                lines: &["a {}", "b [0123456789abcdef0123456789abcdef01234567] {}"],
                want_line: 4,
                want: "dependency \"0123456789abcdef0123456789abcdef01234567\" names a change by id without a project",
            },
            Case {
                name: "switchyard: requires and conflicts with the same change",
                lines: &["a {}", "b [a !a] {}"],
                want_line: 4,
                want: "change \"b\" both requires and conflicts with \"a\"",
            },
            Case {
                name: "switchyard: same change written with and without the project",
                lines: &["a {}", "b [x:a !a] {}"],
                want_line: 4,
                want: "change \"b\" both requires and conflicts with \"a\"",
            },
        ];
        for case in cases {
            let (line, message) = failure(&body(case.lines));
            assert_eq!(line, Some(case.want_line), "{}: {message}", case.name);
            assert!(message.starts_with(case.want), "{}: {message}", case.name);
        }
    }

    #[test]
    fn errors_display_file_and_line() {
        let err = parse(&body(&["a [zz] {}"])).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "sqitch.plan:3: change \"a\" requires unknown change \"zz\""
        );
    }

    #[test]
    fn dependency_errors_wait_for_the_end_of_their_section() {
        // Like Sqitch, a section's dependencies are checked at its closing tag (or the end of
        // the file), so a syntax error earlier in the file wins over a dependency error.
        let (line, _) = failure(&body(&["a [zz] {}", "b", "@t {}"]));
        assert_eq!(line, Some(4));
    }

    #[test]
    fn missing_project_is_blamed_on_the_first_line() {
        // Sqitch names no line; line 1 is where the header, and the pragma, belong.
        for text in [
            "",
            "%uri=https://example.com/\n\na 2024-01-01T00:00:00Z M <m@x>\n",
            "%project=0\n",
        ] {
            let (line, message) = failure(text);
            assert_eq!(
                (line, message.as_str()),
                (Some(1), "missing %project pragma"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn invalid_project_names_are_refused() {
        for (text, want_line) in [
            ("%project=a-\n", 1),
            ("%uri=u\n%project\n", 2),
            ("%project=a b\n", 1),
        ] {
            let (line, message) = failure(text);
            assert_eq!(line, Some(want_line), "{text:?}");
            assert!(
                message.starts_with("invalid project name"),
                "{text:?}: {message}"
            );
        }
    }

    #[test]
    fn international_uri_hosts_are_refused_rather_than_guessed() {
        let (line, message) = failure(&format!("%project=x\n%uri=https://例え.jp/x\n\na {TAIL}\n"));
        assert_eq!(line, Some(2));
        assert!(message.contains("non-ASCII host name"), "{message}");
    }

    #[test]
    fn other_projects_and_conflicts_are_not_checked() {
        // sqitch: `proj:change` in another project, `!conflicts` and ids of other projects are
        // left to deploy time.
        let plan = plan(&body(&["a [y:zz y:@t !nothing !y:other] {}"]));
        assert_eq!(plan.changes[0].requires.len(), 2);
        assert_eq!(plan.changes[0].conflicts.len(), 2);
        assert!(!plan.changes[0].requires[0].is_local("x"));
    }

    #[test]
    fn valid_dependencies_are_accepted() {
        let plan = plan(&body(&[
            "a {}",
            "b [a] {}",
            "@t {}",
            "c [a@t b@t @t x:a x:@t] {}",
            "d [c] {}",
        ]));
        let shown: Vec<String> = plan.changes[2]
            .requires
            .iter()
            .map(|d| d.as_string("x"))
            .collect();
        assert_eq!(shown, ["a@t", "b@t", "@t", "a", "@t"]);
    }

    #[test]
    fn a_plan_with_only_pragmas_is_valid() {
        let plan = plan(HEADER);
        assert!(plan.changes.is_empty());
    }
}
