use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn check(pattern: Value, event: Value, expected: bool) {
    let p = Pattern::compile(&pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    assert_eq!(
        p.matches(&event),
        expected,
        "pattern {pattern} on event {event}"
    );
}

/// The 232 cases written by others (aws/event-ruler, quamina, the EventBridge guide).
#[test]
fn every_shared_pattern_case_gives_the_expected_result() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/patterns/cases.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut failures = Vec::new();
    let mut n = 0;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        n += 1;
        let case: Value = serde_json::from_str(line).unwrap();
        let expected = case["match"].as_bool().unwrap();
        match Pattern::compile(&case["pattern"]) {
            Err(e) => failures.push(format!(
                "line {}: does not compile: {e}\n  {}",
                i + 1,
                case["source"]
            )),
            Ok(p) if p.matches(&case["event"]) != expected => failures.push(format!(
                "line {}: expected {expected}\n  pattern {}\n  event   {}\n  {}",
                i + 1,
                case["pattern"],
                case["event"],
                case["source"]
            )),
            Ok(_) => {}
        }
    }
    assert_eq!(n, 232);
    assert!(
        failures.is_empty(),
        "{} of {n} cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn exact_values_nested_fields_and_arrays() {
    let event = json!({"source":"custom.app","detail-type":"Start ECS Task",
        "detail":{"service":"auth","n":5,"tags":["a","b"],"empty":"","nothing":null}});
    check(json!({"source":["custom.app"]}), event.clone(), true);
    check(json!({"source":["other"]}), event.clone(), false);
    check(
        json!({"detail":{"service":["auth","web"]}}),
        event.clone(),
        true,
    );
    check(json!({"detail":{"n":[5.0]}}), event.clone(), true);
    check(json!({"detail":{"n":["5"]}}), event.clone(), false);
    check(json!({"detail":{"tags":["b"]}}), event.clone(), true);
    check(json!({"detail":{"empty":[""]}}), event.clone(), true);
    check(json!({"detail":{"nothing":[null]}}), event.clone(), true);
    check(json!({"detail":{"missing":[null]}}), event.clone(), false);
    check(
        json!({"source":["custom.app"],"detail-type":["Nope"]}),
        event,
        false,
    );
}

#[test]
fn operators() {
    let e = json!({"s":"Hello.World","ip":"10.0.0.7","ip6":"2001:db8::1","n":42,"b":true});
    check(json!({"s":[{"prefix":"Hello"}]}), e.clone(), true);
    check(
        json!({"s":[{"prefix":{"equals-ignore-case":"hello"}}]}),
        e.clone(),
        true,
    );
    check(json!({"s":[{"suffix":".World"}]}), e.clone(), true);
    check(
        json!({"s":[{"suffix":{"equals-ignore-case":".WORLD"}}]}),
        e.clone(),
        true,
    );
    check(
        json!({"s":[{"equals-ignore-case":"hello.world"}]}),
        e.clone(),
        true,
    );
    check(json!({"s":[{"wildcard":"H*o.*d"}]}), e.clone(), true);
    check(json!({"s":[{"wildcard":"H*x"}]}), e.clone(), false);
    check(json!({"s":[{"anything-but":"x"}]}), e.clone(), true);
    check(
        json!({"s":[{"anything-but":["Hello.World"]}]}),
        e.clone(),
        false,
    );
    check(
        json!({"s":[{"anything-but":{"prefix":"Hell"}}]}),
        e.clone(),
        false,
    );
    check(
        json!({"s":[{"anything-but":{"suffix":"x"}}]}),
        e.clone(),
        true,
    );
    check(
        json!({"s":[{"anything-but":{"equals-ignore-case":["HELLO.WORLD"]}}]}),
        e.clone(),
        false,
    );
    check(
        json!({"s":[{"anything-but":{"wildcard":"*World"}}]}),
        e.clone(),
        false,
    );
    check(json!({"n":[{"numeric":[">",0,"<=",42]}]}), e.clone(), true);
    check(json!({"n":[{"numeric":["=",42]}]}), e.clone(), true);
    check(json!({"n":[{"numeric":["<",42]}]}), e.clone(), false);
    check(json!({"n":[{"anything-but":[41, 43]}]}), e.clone(), true);
    check(json!({"ip":[{"cidr":"10.0.0.0/24"}]}), e.clone(), true);
    check(json!({"ip":[{"cidr":"10.0.1.0/24"}]}), e.clone(), false);
    check(json!({"ip6":[{"cidr":"2001:db8::/32"}]}), e.clone(), true);
    check(json!({"b":[{"exists":true}]}), e.clone(), true);
    check(json!({"gone":[{"exists":false}]}), e.clone(), true);
    check(json!({"gone":[{"exists":true}]}), e.clone(), false);
    check(json!({"$or":[{"s":["x"]},{"n":[42]}]}), e.clone(), true);
    check(json!({"$or":[{"s":["x"]},{"n":[41]}]}), e, false);
}

#[test]
fn fields_in_arrays_of_objects_match_within_one_element() {
    let e = json!({"employees":[{"firstName":"John","lastName":"Doe"},{"firstName":"Anna","lastName":"Smith"}]});
    check(
        json!({"employees":{"firstName":["Anna"],"lastName":["Smith"]}}),
        e.clone(),
        true,
    );
    check(
        json!({"employees":{"firstName":["Anna"],"lastName":["Doe"]}}),
        e,
        false,
    );
}

/// Refused as EventBridge refuses them, with the path inside the pattern.
/// Where tugboat and aws/event-ruler disagreed, event-ruler follows EventBridge's
/// documentation; these are tugboat's own cases for each group (issue 17).
#[test]
fn anything_but_forms_match_numbers_null_and_booleans() {
    // "Anything except what's provided": a value that is not a string is not a string with
    // that prefix, suffix, spelling or shape.
    for op in [
        json!({"prefix": "init"}),
        json!({"suffix": ".png"}),
        json!({"equals-ignore-case": "on"}),
        json!({"wildcard": "a*z"}),
        json!({"prefix": ["x", "y"]}),
    ] {
        for value in [
            json!(5),
            json!(-1.5),
            json!(null),
            json!(true),
            json!(false),
        ] {
            check(
                json!({"a": [{"anything-but": op}]}),
                json!({"a": value}),
                true,
            );
        }
        // Still nothing for an absent field, and still a match for another string.
        check(json!({"a": [{"anything-but": op}]}), json!({"b": 1}), false);
        check(
            json!({"a": [{"anything-but": op}]}),
            json!({"a": "qqq"}),
            true,
        );
    }
    check(
        json!({"a": [{"anything-but": {"prefix": "init"}}]}),
        json!({"a": "initial"}),
        false,
    );
    check(
        json!({"a": [{"anything-but": {"equals-ignore-case": "ON"}}]}),
        json!({"a": "on"}),
        false,
    );
    // In an array, one element that is not excluded is enough.
    check(
        json!({"a": [{"anything-but": {"prefix": "x"}}]}),
        json!({"a": ["xa", 3]}),
        true,
    );
}

#[test]
fn exists_false_alone_needs_every_element_of_an_array_to_lack_the_field() {
    let absent = json!({"a": {"b": [{"exists": false}]}});
    // b exists in the event (in one element): no match, though another element lacks it.
    check(absent.clone(), json!({"a": [{"b": 1}, {}]}), false);
    check(absent.clone(), json!({"a": [{}, {"c": 1}]}), true);
    check(absent.clone(), json!({"a": []}), true);
    check(absent.clone(), json!({"x": 1}), true);
    // Deeper: a.x.b anywhere below arrays.
    let deep = json!({"a": {"x": {"b": [{"exists": false}]}}});
    check(
        deep.clone(),
        json!({"a": [{"x": {}}, {"x": [{"b": "y"}]}]}),
        false,
    );
    check(deep, json!({"a": [{"x": {}}, {"x": [{"c": "y"}]}]}), true);
    // A field that picks an element makes the absences after it (in key order) that
    // element's (array consistency, as event-ruler's own employees case has it); an absence
    // before it is still the array's (event-ruler, built from source, agrees on both).
    let after = json!({"a": {"c": ["x"], "z": [{"exists": false}]}});
    check(after.clone(), json!({"a": [{"c": "x"}, {"z": 1}]}), true);
    check(
        after.clone(),
        json!({"a": [{"c": "x", "z": 2}, {"z": 1}]}),
        false,
    );
    check(after, json!({"a": [{"c": "y"}, {"d": 1}]}), false);
    let before = json!({"a": {"b": [{"exists": false}], "c": ["x"]}});
    check(before.clone(), json!({"a": [{"c": "x"}, {"b": 1}]}), false);
    check(before, json!({"a": [{"c": "x"}, {"d": 1}]}), true);
    // Under $or too.
    let or = json!({"$or": [{"a": {"b": [{"exists": false}]}}, {"z": [1]}]});
    check(or.clone(), json!({"a": [{"b": 1}, {}]}), false);
    check(or, json!({"a": [{"b": 1}, {}], "z": 1}), true);
    // exists:true is unchanged: any element.
    check(
        json!({"a": {"b": [{"exists": true}]}}),
        json!({"a": [{"b": 1}, {}]}),
        true,
    );
}

#[test]
fn anything_but_numbers_that_are_not_exactly_doubles_are_refused_as_eventbridge_refuses_them() {
    for p in [
        json!({"n": [{"anything-but": 9007199254740993_u64}]}),
        json!({"n": [{"anything-but": [7, 9007199254740995_u64]}]}),
        json!({"n": [{"anything-but": [-9007199254740993_i64]}]}),
        // 2^60 is a double, but not the shortest decimal of one: refused as `numeric` refuses
        // it (event-ruler 337e8d9 runs both through ComparableNumber.generate).
        json!({"n": [{"anything-but": 1152921504606846976_u64}]}),
        json!({"n": [{"anything-but": [1, -1152921504606846976_i64]}]}),
    ] {
        let e = Pattern::compile(&p).unwrap_err();
        assert!(e.message.contains("not exactly a double"), "{p}: {e}");
    }
    check(
        json!({"n": [{"anything-but": [9007199254740992_u64, 6e9]}]}),
        json!({"n": 1}),
        true,
    );
    check(
        json!({"n": [{"anything-but": [9007199254740992_u64]}]}),
        json!({"n": 9007199254740992_u64}),
        false,
    );
    // 2^54 is the shortest decimal of its double: taken, as by `numeric`.
    check(
        json!({"n": [{"anything-but": 18014398509481984_u64}]}),
        json!({"n": 18014398509481984_u64}),
        false,
    );
    assert!(Pattern::compile(&json!({"n": [{"numeric": [">", 18014398509481984_u64]}]})).is_ok());
}

/// aws/event-ruler cannot compare a number that is not exactly the shortest decimal of its
/// double ("Cannot compare number"); such an event value matches no `numeric` matcher there,
/// nor here. Each case was run through event-ruler 337e8d9.
#[test]
fn numeric_matchers_skip_integers_event_ruler_cannot_compare() {
    let p = json!({"c": [{"numeric": [">", 5]}]});
    for (value, expected) in [
        (json!(9007199254740992u64), true),      // 2^53
        (json!(9007199254740993u64), false),     // 2^53 + 1: not a double
        (json!(18014398509481984u64), true),     // 2^54: shortest decimal exact
        (json!(1152921504606846976u64), false),  // 2^60: a double, shortest decimal not it
        (json!(18446744073709551615u64), false), // u64::MAX
        (json!(-9007199254740993i64), false),
        (json!(100000000000000000000.0), true), // past u64: a float
        (json!(1054446031.0000001), true),
    ] {
        check(p.clone(), json!({"c": value}), expected);
    }
    // Bounds anywhere in a double's range, as event-ruler takes them.
    check(
        json!({"c": [{"numeric": [">", 1e10]}]}),
        json!({"c": 2e10}),
        true,
    );
    check(
        json!({"c": [{"numeric": ["<", -1e300]}]}),
        json!({"c": -2e300}),
        true,
    );
}

#[test]
fn numbers_are_compared_exactly() {
    check(
        json!({"n": [9007199254740993_u64]}),
        json!({"n": 9007199254740992_u64}),
        false,
    );
    check(
        json!({"n": [9007199254740993_u64]}),
        json!({"n": 9007199254740993_u64}),
        true,
    );
    let event: Value = serde_json::from_str(r#"{"n": 1054446031.0000001}"#).unwrap();
    check(json!({"n": [1054446031]}), event.clone(), false);
    check(json!({"n": [{"anything-but": [1054446031]}]}), event, true);
    // By value, whatever the spelling: 5, 5.0 and 5e0 are one number.
    for text in ["5", "5.0", "5e0", "0.5e1"] {
        let event: Value = serde_json::from_str(&format!(r#"{{"n": {text}}}"#)).unwrap();
        check(json!({"n": [5]}), event, true);
    }
    check(json!({"n": [-3]}), json!({"n": -3.0}), true);
    check(json!({"n": [u64::MAX]}), json!({"n": -1}), false);
    check(json!({"n": [0.1]}), json!({"n": 0.1}), true);
    check(
        json!({"n": [0.1]}),
        json!({"n": 0.10000000000000002}),
        false,
    );
}

#[test]
fn case_insensitive_operators_take_each_letter_in_either_case_as_event_ruler_does() {
    // Each character of the pattern in its lower or upper case form; the event's text as is.
    for (pattern, event, expected) in [
        ("µ", "Μ", true),
        ("µ", "µ", true),
        ("ſ", "S", true),
        ("ſ", "ſ", true),
        ("ς", "Σ", true),
        ("σ", "Σ", true),
        ("ÉTÉ", "été", true),
        ("été", "ÉTÉ", true),
        ("ß", "SS", true),
        ("ß", "ß", true),
        ("Straße", "STRASSE", true),
        // Not folded: the forms of Μ are μ and Μ, not µ; of s, s and S, not ſ.
        ("Μ", "µ", false),
        ("s", "ſ", false),
        ("ß", "ss", false),
        ("µ", "m", false),
        ("abc", "ABC", true),
        ("abc", "ABD", false),
        ("k", "\u{212a}", false),
    ] {
        check(
            json!({"a": [{"equals-ignore-case": pattern}]}),
            json!({"a": event}),
            expected,
        );
        check(
            json!({"a": [{"prefix": {"equals-ignore-case": pattern}}]}),
            json!({"a": format!("{event}xyz")}),
            expected,
        );
        check(
            json!({"a": [{"suffix": {"equals-ignore-case": pattern}}]}),
            json!({"a": format!("xyz{event}")}),
            expected,
        );
        check(
            json!({"a": [{"anything-but": {"equals-ignore-case": pattern}}]}),
            json!({"a": event}),
            !expected,
        );
    }
    // A prefix or suffix longer than the value is no match.
    check(
        json!({"a": [{"prefix": {"equals-ignore-case": "abcd"}}]}),
        json!({"a": "ab"}),
        false,
    );
    check(
        json!({"a": [{"suffix": {"equals-ignore-case": "ééé"}}]}),
        json!({"a": "é"}),
        false,
    );
}

#[test]
fn invalid_patterns_are_refused_naming_the_path() {
    for (pattern, path, part) in [
        (json!([]), "(top)", "JSON object"),
        (json!({}), "(top)", "at least one field"),
        (json!({"source":"custom.app"}), "source", "in a list"),
        (json!({"detail":{"state":[]}}), "detail.state", "empty list"),
        (
            json!({"detail":{"state":[{"unknown-op":1}]}}),
            "detail.state[0]",
            "unknown operator",
        ),
        (
            json!({"n":[{"numeric":[">"]}]}),
            "n[0].numeric",
            "one comparison or a range",
        ),
        (
            json!({"n":[{"numeric":[">",5,"<"]}]}),
            "n[0].numeric",
            "one comparison or a range",
        ),
        (
            json!({"n":[{"numeric":["<",5,">",1]}]}),
            "n[0].numeric",
            "lower bound",
        ),
        (
            json!({"n":[{"numeric":[">",5,"<",1]}]}),
            "n[0].numeric",
            "not below",
        ),
        (
            json!({"n":[{"numeric":["~",5]}]}),
            "n[0].numeric",
            "operator",
        ),
        (
            json!({"n":[{"numeric":[">","5"]}]}),
            "n[0].numeric",
            "needs a number",
        ),
        (json!({"s":[{"prefix":5}]}), "s[0].prefix", "needs a string"),
        (
            json!({"s":[{"exists":"yes"}]}),
            "s[0].exists",
            "true or false",
        ),
        (
            json!({"s":[{"cidr":"10.0.0.0/33"}]}),
            "s[0].cidr",
            "prefix length",
        ),
        (
            json!({"s":[{"cidr":"not-an-ip/8"}]}),
            "s[0].cidr",
            "not an IP",
        ),
        // As aws/event-ruler refuses them: no prefix length, a full-width one, an empty
        // anything-but prefix or suffix.
        (json!({"s":[{"cidr":"10.0.0.1"}]}), "s[0].cidr", "a '/'"),
        (
            json!({"s":[{"numeric":[">", 9007199254740993u64]}]}),
            "s[0].numeric",
            "not exactly a double",
        ),
        (
            json!({"s":[{"numeric":[">", 1152921504606846976u64]}]}),
            "s[0].numeric",
            "not exactly a double",
        ),
        (
            json!({"s":[{"cidr":"10.0.0.1/32"}]}),
            "s[0].cidr",
            "0 to 31",
        ),
        (
            json!({"s":[{"cidr":"2001:db8::1/128"}]}),
            "s[0].cidr",
            "0 to 127",
        ),
        (
            json!({"s":[{"anything-but":{"prefix":""}}]}),
            "s[0].anything-but.prefix",
            "cannot be empty",
        ),
        (
            json!({"s":[{"anything-but":{"suffix":["a", ""]}}]}),
            "s[0].anything-but.suffix",
            "cannot be empty",
        ),
        (
            json!({"s":[{"wildcard":"a**b"}]}),
            "s[0].wildcard",
            "consecutive",
        ),
        (
            json!({"s":[{"anything-but":[1,"a"]}]}),
            "s[0].anything-but",
            "strings or a list of numbers",
        ),
        (
            json!({"s":[{"anything-but":{"exists":true}}]}),
            "s[0].anything-but",
            "does not take",
        ),
        (
            json!({"s":[{"prefix":"a","suffix":"b"}]}),
            "s[0]",
            "exactly one operator",
        ),
        (json!({"s":[["nested"]]}), "s[0]", "cannot be a list"),
        (json!({"$or":[{"a":["x"]}]}), "$or", "at least two"),
        (
            json!({"$or":[{"a":["x"]}, 5]}),
            "$or[1]",
            "non-empty object",
        ),
        (
            json!({"$or":[{"a":["x"]}, {"b":"y"}]}),
            "$or[1].b",
            "in a list",
        ),
        (
            json!({"x":[format!("{}", "a".repeat(5000))]}),
            "(top)",
            "4096",
        ),
    ] {
        let e = Pattern::compile(&pattern).expect_err(&pattern.to_string());
        assert_eq!(e.path, path, "{pattern}: {e}");
        assert!(e.message.contains(part), "{pattern}: {e}");
    }
}

#[test]
fn first_mismatch_names_the_field() {
    let p =
        Pattern::compile(&json!({"source":["aws.ec2"],"detail":{"state":["running"]}})).unwrap();
    let e = json!({"source":"aws.ec2","detail":{"state":"stopped"}});
    assert_eq!(
        p.first_mismatch(&e).unwrap(),
        "detail.state (value \"stopped\")"
    );
    assert_eq!(
        p.first_mismatch(&json!({"detail":{"state":"running"}}))
            .unwrap(),
        "source (absent)"
    );
    assert!(
        p.first_mismatch(&json!({"source":"aws.ec2","detail":{"state":"running"}}))
            .is_none()
    );
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-zA-Z0-9 .:/_-]{0,12}".prop_map(Value::String),
        (-1_000_000i64..1_000_000).prop_map(|n| json!(n)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

fn event() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 1..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A pattern that asks for every leaf of `event` at its path (arrays: their first element).
fn pattern_of(event: &Value) -> Option<Value> {
    match event {
        Value::Object(m) if !m.is_empty() => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let sub = match v {
                    Value::Object(_) => pattern_of(v)?,
                    Value::Array(items) => match items.first()? {
                        Value::Object(_) | Value::Array(_) => continue,
                        first => json!([first]),
                    },
                    leaf => json!([leaf]),
                };
                out.insert(k.clone(), sub);
            }
            if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            }
        }
        _ => None,
    }
}

proptest! {
    #[test]
    fn a_pattern_built_from_an_events_own_values_matches_it(e in event()) {
        if let Some(p) = pattern_of(&e) {
            let compiled = Pattern::compile(&p).unwrap();
            prop_assert!(compiled.matches(&e), "pattern {} event {}", p, e);
        }
    }

    #[test]
    fn anything_but_a_value_never_matches_that_value(v in "[a-z]{0,8}", n in -1000i64..1000) {
        let p = Pattern::compile(&json!({"f": [{"anything-but": v.clone()}]})).unwrap();
        let event = json!({"f": v});
        prop_assert!(!p.matches(&event));
        let p = Pattern::compile(&json!({"f": [{"anything-but": [n]}]})).unwrap();
        let (int, float) = (json!({"f": n}), json!({"f": n as f64}));
        prop_assert!(!p.matches(&int));
        prop_assert!(!p.matches(&float));
    }

    #[test]
    fn compiling_and_matching_arbitrary_json_never_panics(p in event(), e in event()) {
        if let Ok(compiled) = Pattern::compile(&p) {
            let _ = compiled.matches(&e);
            let _ = compiled.first_mismatch(&e);
        }
    }

    #[test]
    fn wildcards_agree_with_a_naive_matcher(pat in "[ab*]{0,6}", s in "[ab]{0,8}") {
        prop_assume!(!pat.contains("**"));
        let compiled = Pattern::compile(&json!({"f": [{"wildcard": pat.clone()}]})).unwrap();
        prop_assert_eq!(compiled.matches(&json!({"f": s.clone()})), naive_glob(pat.as_bytes(), s.as_bytes()));
    }
}

/// `event` as a well-formed EventBridge event (what `peek` reads without `decode`).
fn eventbridge(mut event: Value) -> Value {
    if let Value::Object(m) = &mut event {
        m.insert("source".into(), json!("s"));
        m.insert("detail-type".into(), json!("t"));
        m.remove("detail");
        m.remove("id");
    }
    event
}

proptest! {
    #[test]
    fn a_pattern_matches_the_pruned_event_exactly_when_it_matches_the_whole(
        p in event(),
        e in prop::collection::btree_map("[a-z]{1,4}", event(), 1..5),
    ) {
        let Ok(pattern) = Pattern::compile(&p) else { return Ok(()) };
        let e = eventbridge(Value::Object(e.into_iter().collect()));
        let router = Router::new(vec![Route::new("r", pattern.clone(), "log")]);
        let mut paths = crate::events::peek::Paths::new();
        for path in pattern.paths() {
            paths.add(&path);
        }
        let body = e.to_string();
        let pruned = crate::events::peek::peek(&body, &paths);
        prop_assert!(pruned.is_some(), "a well-formed EventBridge event is peeked: {}", e);
        prop_assert_eq!(pattern.matches(pruned.as_ref().unwrap()), pattern.matches(&e), "pattern {} event {}", p, e);
        prop_assert_eq!(router.matches_nothing("q", &e.to_string()), !pattern.matches(&e));
    }

    #[test]
    fn a_pattern_built_from_an_event_matches_its_pruned_form(e in event()) {
        let Value::Object(_) = &e else { return Ok(()) };
        let e = eventbridge(e);
        if let Some(p) = pattern_of(&e) {
            let router = Router::new(vec![Route::new("r", Pattern::compile(&p).unwrap(), "log")]);
            prop_assert!(!router.matches_nothing("q", &e.to_string()), "pattern {} event {}", p, e);
        }
    }
}

#[test]
fn the_shared_cases_agree_on_pruned_events() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/patterns/cases.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut peeked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        let Ok(pattern) = Pattern::compile(&case["pattern"]) else {
            continue;
        };
        let mut paths = crate::events::peek::Paths::new();
        for p in pattern.paths() {
            paths.add(&p);
        }
        // Made an EventBridge event where that cannot change the result: the envelope's
        // fields added only where the pattern does not read them.
        let mut event = case["event"].clone();
        let read: Vec<String> = pattern.paths().iter().map(|p| p[0].clone()).collect();
        if let Value::Object(m) = &mut event {
            for key in ["source", "detail-type"] {
                if !m.contains_key(key) && !read.iter().any(|r| r == key) {
                    m.insert(key.into(), json!("x"));
                }
            }
        }
        let body = event.to_string();
        if let Some(pruned) = crate::events::peek::peek(&body, &paths) {
            peeked += 1;
            assert_eq!(pattern.matches(&pruned), pattern.matches(&event), "{line}");
            assert_eq!(
                pattern.matches(&event),
                case["match"].as_bool().unwrap(),
                "{line}"
            );
        }
    }
    assert!(
        peeked > 150,
        "only {peeked} shared cases are EventBridge events"
    );
}

#[test]
fn peek_leaves_other_shapes_and_malformed_events_to_decode() {
    use crate::events::peek::{Paths, peek};
    let paths = Paths::new();
    for body in [
        r#"{"Records": [], "source": "s", "detail-type": "t"}"#,
        r#"{"Type": "Notification", "TopicArn": "x", "source": "s", "detail-type": "t"}"#,
        r#"{"Event": "s3:TestEvent", "source": "s", "detail-type": "t"}"#,
        r#"{"source": 5, "detail-type": "t"}"#,
        r#"{"source": "s", "detail-type": "t", "detail": "x"}"#,
        r#"{"source": "s", "detail-type": "t", "id": ""}"#,
        r#"{"source": "s"}"#,
        r#"{"detail": {}}"#,
        r#"[{"Source": "s", "DetailType": "t"}]"#,
        r#"{"source": "s", "detail-type": "t"} trailing"#,
        r#"{"source": "s", "detail-type": "t", "x": [1, 2"#,
        "not json",
    ] {
        assert!(peek(body, &paths).is_none(), "{body}");
    }
    let big = format!(
        r#"{{"source": "s", "detail-type": "t", "pad": "{}"}}"#,
        "x".repeat(300_000)
    );
    assert!(peek(&big, &paths).is_none(), "over the size limit");
    let v = peek(
        r#"{"source": "s", "detail-type": "t", "detail": {"a": [1, {"b": 2}]}, "id": "e"}"#,
        &paths,
    )
    .unwrap();
    assert_eq!(
        Value::from(&v),
        json!({"source": "s", "detail-type": "t", "detail": {}, "id": "e"})
    );
}

fn naive_glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => naive_glob(&p[1..], s) || (!s.is_empty() && naive_glob(p, &s[1..])),
        (Some(a), Some(b)) if a == b => naive_glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// The source index only skips routes that cannot match: the result, and its order, are those
/// of evaluating every route.
#[test]
fn the_router_index_changes_no_result() {
    let patterns = [
        json!({"source": ["aws.ec2"]}),
        json!({"detail-type": [{"prefix": "EC2"}]}),
        json!({"source": ["aws.ecs", "aws.ec2"], "detail-type": [{"exists": true}]}),
        json!({"source": [{"prefix": "aws."}]}),
        json!({"$or": [{"source": ["aws.s3"]}, {"source": ["aws.ec2"]}]}),
        json!({"source": ["custom.app"]}),
        json!({"detail": {"state": [{"exists": false}]}}),
    ];
    let routes: Vec<Route> = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| Route::new(&format!("r{i}"), Pattern::compile(p).unwrap(), "log"))
        .collect();
    let router = Router::new(routes);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/eventbridge");
    let mut events: Vec<Value> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect();
    events.extend([
        json!({"detail-type": "EC2 x"}),
        json!({"source": ["aws.ec2", "x"]}),
        json!({"source": 5}),
        json!({}),
    ]);
    for e in &events {
        let indexed: Vec<&str> = router.matching("q", e).map(|r| r.name.as_str()).collect();
        let all: Vec<&str> = router
            .routes()
            .iter()
            .filter(|r| r.pattern().matches(e))
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(indexed, all, "{e}");
    }
}

/// Small events over few keys and values, so that patterns built from one often meet others.
fn small_event() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!(1)),
        Just(json!(2.0)),
        Just(json!("x")),
        Just(json!("y")),
        Just(Value::Null),
        Just(json!(true)),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[ab]", inner, 1..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `v` with some of its objects moved into arrays: `[o]`, `[o, {}]` or kept, by `wrap`.
fn arrayify(v: &Value, wrap: &[u8], i: &mut usize) -> Value {
    match v {
        Value::Object(m) => {
            let inner: serde_json::Map<String, Value> = m
                .iter()
                .map(|(k, x)| {
                    let x = arrayify(x, wrap, i);
                    let how = wrap.get(*i).copied().unwrap_or(0);
                    *i += 1;
                    let x = match (&x, how) {
                        (Value::Object(_), 1) => json!([x]),
                        (Value::Object(_), 2) => json!([{}, x, {"a": "y"}]),
                        _ => x,
                    };
                    (k.clone(), x)
                })
                .collect();
            Value::Object(inner)
        }
        other => other.clone(),
    }
}

/// A pattern from `event`'s values, with some leaves asking for an absence instead.
fn some_pattern(event: &Value, absent: &[bool]) -> Option<Value> {
    let mut p = pattern_of(event)?;
    fn flip(p: &mut Value, absent: &[bool], i: &mut usize) {
        if let Value::Object(m) = p {
            for v in m.values_mut() {
                if v.is_array() {
                    if absent.get(*i).copied().unwrap_or(false) {
                        *v = json!([{"exists": false}]);
                    }
                    *i += 1;
                } else {
                    flip(v, absent, i);
                }
            }
        }
    }
    flip(&mut p, absent, &mut 0);
    Some(p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The router's per-path checks (and its source index) give exactly the routes whose
    /// whole pattern matches, from the event or from the body.
    #[test]
    fn the_router_finds_exactly_the_routes_whose_patterns_match(
        sources in prop::collection::vec(event(), 4),
        shapes in prop::collection::vec(small_event(), 4),
        absent in prop::collection::vec(any::<bool>(), 8),
        ors in any::<bool>(),
        wrap in prop::collection::vec(0..3u8, 8),
        other in small_event(),
        own in any::<bool>(),
    ) {
        // The event: one the patterns were built from, its objects put in arrays here and
        // there (where array consistency and absences decide), or another.
        let e = if own { arrayify(&shapes[0], &wrap, &mut 0) } else { other };
        let mut patterns = Vec::new();
        for s in shapes.iter().chain(&sources) {
            let Value::Object(_) = s else { continue };
            if let Some(p) = some_pattern(s, &absent) {
                patterns.push(p);
            }
        }
        if ors && patterns.len() >= 2 {
            let either = json!({"$or": [patterns[0].clone(), patterns[1].clone()]});
            patterns.push(either);
        }
        let routes: Vec<Route> = patterns
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some(Route::new(&format!("r{i}"), Pattern::compile(p).ok()?, "log")))
            .collect();
        let Value::Object(_) = &e else { return Ok(()) };
        let event = eventbridge(e);
        let router = Router::new(routes.clone());
        let expected: Vec<&str> = routes
            .iter()
            .filter(|r| r.pattern().matches(&event))
            .map(|r| r.name.as_str())
            .collect();
        let from_event: Vec<&str> = router.matching("q", &event).map(|r| r.name.as_str()).collect();
        prop_assert_eq!(&from_event, &expected, "event {}", event);
        let body = event.to_string();
        let from_body: Vec<&str> = router
            .matching_body("q", &body)
            .expect("a well-formed EventBridge event is judged from its body")
            .into_iter()
            .map(|r| r.name.as_str())
            .collect();
        prop_assert_eq!(&from_body, &expected, "event {}", event);
    }
}

/// The shared cases' patterns as one router: for each case's event, the routes found are
/// those whose pattern matches it whole (arrays, absences, `$or` and all).
#[test]
fn the_shared_cases_as_one_router_agree_with_each_pattern() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/patterns/cases.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let cases: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let routes: Vec<Route> = cases
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            Some(Route::new(
                &format!("r{i}"),
                Pattern::compile(&c["pattern"]).ok()?,
                "log",
            ))
        })
        .collect();
    assert!(routes.len() > 200, "{} patterns compile", routes.len());
    let router = Router::new(routes.clone());
    let mut matched = 0;
    for case in &cases {
        let event = &case["event"];
        let expected: Vec<&str> = routes
            .iter()
            .filter(|r| r.pattern().matches(event))
            .map(|r| r.name.as_str())
            .collect();
        matched += expected.len();
        let found: Vec<&str> = router
            .matching("q", event)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(found, expected, "{event}");
        let body = event.to_string();
        if let Some(from_body) = router.matching_body("q", &body) {
            let names: Vec<&str> = from_body.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(names, expected, "{event}");
        }
    }
    assert!(matched > 200, "only {matched} matches over all cases");
}
