//! Change and tag ids, which must equal Sqitch's so both tools agree about one registry.
//!
//! Expected ids come from Sqitch 1.3.1: each plan below was written to a project with
//! `[core] engine = pg` and read with `App::Sqitch::Target->new(...)->plan`, printing
//! `$change->id` and `$tag->id` (the change ids also match `sqitch plan --format raw`).

use super::super::plan::change_info;
use super::plan;

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
