//! Fuzz-style tests: no text given to the duration, URL or value parsers makes them panic.

use proptest::prelude::*;
use secrecy::SecretString;

use crate::schema::{self, Raw, KEYS};
use crate::url;

/// Text shaped like what the parsers see: digits, units, URL punctuation, and anything at all.
fn input() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{0,30}[ ]?(ms|s|min|h|d|µs|)[ ]?",
        "-?[0-9]{1,25}(\\.[0-9]{0,5})?(ms|s|min|h|d)",
        "(postgres|postgresql)://[a-z%:@0-9\\[\\]/?&=#.,-]{0,60}",
        "postgres://[^ ]{0,40}@[^ ]{0,40}/[^ ]{0,20}\\?[a-z_]{0,15}=[^ ]{0,20}(&[a-z_]{0,15}=[^ ]{0,20})?",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn durations_never_panic_and_stay_within_the_bound(text in input()) {
        if let Ok(duration) = schema::parse_duration(&text) {
            prop_assert!(duration <= schema::MAX_DURATION, "{text:?} gave {duration:?}");
        }
    }

    #[test]
    fn urls_never_panic(text in input()) {
        if let Ok(parts) = url::parse(&SecretString::from(text)) {
            let _ = url::values(&parts);
        }
    }

    #[test]
    fn every_key_validates_any_text_without_panicking(text in input()) {
        for key in KEYS {
            let _ = schema::validate(key, Raw::Text(&text), "fuzz");
            let _ = schema::validate(key, Raw::Toml(&toml::Value::String(text.clone())), "fuzz");
        }
        let _ = schema::parse_hosts(&text);
    }
}
