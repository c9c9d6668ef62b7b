//! `Plan::find`: Sqitch's change lookup (`index_of`), checked against Sqitch 1.3.1 on the
//! same plan.

use super::super::FindError;
use super::{body, plan};

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
