//! `Timestamp` through its public surface: serde, `FromStr`/`Display`, clocks.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warden_core::time::{Clock, ManualClock, SystemClock, TimeError, Timestamp};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Event {
    at: Timestamp,
}

#[test]
fn serde_uses_the_rfc3339_string() {
    let event = Event {
        at: Timestamp::from_micros(1_795_372_203_000_123),
    };
    let json = serde_json::to_string(&event).unwrap();
    assert_eq!(json, r#"{"at":"2026-11-22T18:30:03.000123Z"}"#);
    assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);

    let with_offset: Event =
        serde_json::from_str(r#"{"at":"2026-11-23T00:00:03.000123+05:30"}"#).unwrap();
    assert_eq!(with_offset, event);
}

#[test]
fn serde_rejects_bad_input() {
    for bad in [
        r#"{"at":"2026-02-30T00:00:00Z"}"#,
        r#"{"at":12345}"#,
        r#"{"at":"yesterday"}"#,
    ] {
        assert!(serde_json::from_str::<Event>(bad).is_err(), "{bad}");
    }
}

#[test]
fn serialize_refuses_instants_without_rfc3339_form() {
    let event = Event {
        at: Timestamp::MAX_RFC3339.saturating_add_micros(1),
    };
    assert!(serde_json::to_string(&event).is_err());
    let event = Event {
        at: Timestamp::MIN_RFC3339,
    };
    assert_eq!(
        serde_json::to_string(&event).unwrap(),
        r#"{"at":"0000-01-01T00:00:00.000000Z"}"#
    );
}

#[test]
fn display_and_from_str_agree() {
    let t: Timestamp = "1969-12-31T23:59:59.5Z".parse().unwrap();
    assert_eq!(t.as_micros(), -500_000);
    assert_eq!(t.to_string(), "1969-12-31T23:59:59.500000Z");
    assert_eq!(t.to_string(), t.to_rfc3339());
    assert_eq!(
        "2026-01-01T00:00:00".parse::<Timestamp>(),
        Err(TimeError::Syntax {
            at: 19,
            expected: "'Z' or a numeric offset"
        })
    );
    assert!(!TimeError::LeapSecond.to_string().is_empty());
}

#[test]
fn ordering_follows_time() {
    let a: Timestamp = "2026-01-01T00:00:00+01:00".parse().unwrap();
    let b: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    assert!(a < b);
    assert_eq!(b.as_micros() - a.as_micros(), 3_600_000_000);
}

#[test]
fn manual_clock_moves_only_by_hand() {
    let start: Timestamp = "2026-11-22T18:30:03Z".parse().unwrap();
    let clock = ManualClock::new(start);
    assert_eq!(clock.now(), start);
    assert_eq!(clock.now(), start);

    clock.advance_micros(1_500_000);
    assert_eq!(clock.now().to_rfc3339(), "2026-11-22T18:30:04.500000Z");
    clock.advance_micros(-2_000_000);
    assert_eq!(clock.now().to_rfc3339(), "2026-11-22T18:30:02.500000Z");

    clock.set(Timestamp::UNIX_EPOCH);
    assert_eq!(clock.now(), Timestamp::from_micros(0));

    clock.set(Timestamp::from_micros(i64::MAX - 1));
    clock.advance_micros(10);
    assert_eq!(clock.now().as_micros(), i64::MAX);

    assert_eq!(ManualClock::default().now(), Timestamp::UNIX_EPOCH);
}

#[test]
fn clocks_are_shareable_trait_objects() {
    let manual = Arc::new(ManualClock::new(Timestamp::from_micros(0)));
    let clocks: Vec<Arc<dyn Clock>> = vec![manual.clone(), Arc::new(SystemClock)];

    let handles: Vec<_> = (0..4)
        .map(|_| {
            let manual = manual.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    manual.advance_micros(1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(clocks[0].now().as_micros(), 4000);
    assert!(clocks[1].now() > "2026-01-01T00:00:00Z".parse().unwrap());
}
