//! Signed notes against Go `sumdb/note`'s known answers (golang.org/x/mod
//! `sumdb/note/note_test.go`) and the C2SP `signed-note` spec example.

use warden_ledger::note::{
    self, MAX_SIGNATURES, Note, NoteError, Signer, VerifierKey, key_id, open, sign,
};

use crate::{ENOCH_VERIFIER, PETER_SIGNER, PETER_VERIFIER, peter, peter_key};

const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn enoch_key() -> VerifierKey {
    VerifierKey::parse(ENOCH_VERIFIER).unwrap()
}

#[test]
fn go_verifier_key_parses_and_round_trips() {
    let key = peter_key();
    assert_eq!(key.name(), "PeterNeumann");
    assert_eq!(key.key_id(), 0xc74f_20a3);
    assert_eq!(key.to_string(), PETER_VERIFIER);
    assert_eq!(key_id("PeterNeumann", &key.public_key()), 0xc74f_20a3);
    assert_eq!(PETER_VERIFIER.parse::<VerifierKey>().unwrap(), key);
    assert_eq!(enoch_key().to_string(), ENOCH_VERIFIER);
}

/// Go's TestNewVerifier: every proper substring and every single-byte increment of the
/// key is refused, as are a wrong-length key and an unknown algorithm with matching hashes.
#[test]
fn mangled_verifier_keys_are_refused() {
    let bytes = PETER_VERIFIER.as_bytes();
    for i in 0..=bytes.len() {
        for j in i + 1..=bytes.len() {
            if (i, j) == (0, bytes.len()) {
                continue;
            }
            let sub = &PETER_VERIFIER[i..j];
            assert!(VerifierKey::parse(sub).is_err(), "{sub:?} parsed");
        }
    }
    let mut mangled = bytes.to_vec();
    for i in 0..mangled.len() {
        mangled[i] += 1;
        if let Ok(text) = std::str::from_utf8(&mangled) {
            assert!(VerifierKey::parse(text).is_err(), "{text:?} parsed");
        }
        mangled[i] -= 1;
    }
    assert!(
        VerifierKey::parse(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
        .is_err()
    );
    assert_eq!(
        VerifierKey::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(NoteError::UnknownAlgorithm { alg: 0x65 })
    );
}

#[test]
fn go_signer_key_parses_round_trips_and_matches_its_verifier() {
    let signer = peter();
    assert_eq!(signer.name(), "PeterNeumann");
    assert_eq!(signer.key_id(), 0xc74f_20a3);
    assert_eq!(signer.verifier_key(), peter_key());
    assert_eq!(signer.to_private_key(), PETER_SIGNER);
    assert!(
        !format!("{signer:?}").contains("AYEKFALV"),
        "Debug leaks the key"
    );
}

/// Go's TestNewSigner: substrings and single-byte increments are refused.
#[test]
fn mangled_signer_keys_are_refused() {
    let bytes = PETER_SIGNER.as_bytes();
    for i in 0..=bytes.len() {
        for j in i + 1..=bytes.len() {
            if (i, j) == (0, bytes.len()) {
                continue;
            }
            let sub = &PETER_SIGNER[i..j];
            assert!(Signer::parse_private_key(sub).is_err(), "{sub:?} parsed");
        }
    }
    let mut mangled = bytes.to_vec();
    for i in 0..mangled.len() {
        mangled[i] += 1;
        if let Ok(text) = std::str::from_utf8(&mangled) {
            let err = Signer::parse_private_key(text).unwrap_err();
            // No part of the secret appears in the error.
            assert!(!err.to_string().contains("AYEKFALV"), "{err}");
        }
        mangled[i] -= 1;
    }
}

/// Go's TestSign: Ed25519 is deterministic, so the signed note is a known answer.
#[test]
fn signing_gives_go_known_answer() {
    let signed = sign(TEXT, &[&peter()]).unwrap();
    assert_eq!(signed, format!("{TEXT}\n{PETER_SIG}"));
    assert_eq!(
        sign("abc", &[&peter()]),
        Err(NoteError::Malformed {
            reason: "the text does not end in a newline"
        })
    );
    assert_eq!(sign(TEXT, &[]), Err(NoteError::NoSigners));
    assert!(sign("a\u{1}b\n", &[&peter()]).is_err());
    assert!(matches!(
        Signer::from_seed("a+b", &[1; 32]),
        Err(NoteError::InvalidName { .. })
    ));
}

/// Go's TestOpen.
#[test]
fn opening_follows_go() {
    let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");

    // One known key: its signature verifies, the unknown one is ignored.
    let opened = open(&both, &[peter_key()]).unwrap();
    assert_eq!(opened.text, TEXT);
    assert_eq!(opened.verified_by, vec![peter_key()]);

    // Both known.
    let opened = open(&both, &[peter_key(), enoch_key()]).unwrap();
    assert_eq!(opened.verified_by, vec![peter_key(), enoch_key()]);

    // None known.
    assert_eq!(
        open(&both, &[]),
        Err(NoteError::NoKnownSignature {
            signed_by: vec!["PeterNeumann+c74f20a3".into(), "EnochRoot+af0cfe78".into()]
        })
    );
    assert_eq!(
        open(&both, &[]).unwrap_err().to_string(),
        "the note has no signature from a known key (signed by: PeterNeumann+c74f20a3, EnochRoot+af0cfe78)"
    );

    // The same key listed twice is harmless.
    assert!(open(&both, &[peter_key(), peter_key()]).is_ok());

    // Too many signatures, verified or not.
    let many = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1));
    assert_eq!(
        open(&many, &[peter_key()]),
        Err(NoteError::TooManySignatures { count: 101 })
    );
    assert!(
        open(
            &format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES)),
            &[peter_key()]
        )
        .is_ok()
    );

    // An invalid signature from a known key.
    let bad = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert_eq!(
        open(&bad, &[peter_key()]),
        Err(NoteError::InvalidSignature {
            key: "PeterNeumann+c74f20a3".into()
        })
    );

    // Repeated good signatures, and bad ones from unknown keys, are fine.
    let enoch_bad = format!("{}ABCD{}", &ENOCH_SIG[..60], &ENOCH_SIG[60..]);
    let mixed = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{enoch_bad}");
    assert_eq!(
        open(&mixed, &[peter_key()]).unwrap().verified_by,
        vec![peter_key()]
    );

    // Malformed notes.
    for msg in [
        TEXT.to_owned(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\u{1}{TEXT}\n{PETER_SIG}"),
        format!(
            "{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
        ),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!("{TEXT}\n{PETER_SIG}\n"),
        format!("{TEXT}\n\u{2014} PeterNeumann AAAA\n"),
        format!("{TEXT}\n\u{2014} PeterNeumann\n"),
    ] {
        assert!(
            matches!(open(&msg, &[peter_key()]), Err(NoteError::Malformed { .. })),
            "accepted {msg:?}"
        );
    }
}

/// The spec: a key that shares only the name (not the id) with a signature is not the
/// signer; its presence neither verifies nor spoils the note.
#[test]
fn a_key_sharing_only_the_name_is_ignored() {
    let signed = format!("{TEXT}\n{PETER_SIG}");
    let impostor = VerifierKey::new("PeterNeumann", &enoch_key().public_key()).unwrap();
    assert_ne!(impostor.key_id(), 0xc74f_20a3);
    assert!(open(&signed, &[impostor.clone(), peter_key()]).is_ok());
    assert!(matches!(
        open(&signed, &[impostor]),
        Err(NoteError::NoKnownSignature { .. })
    ));
}

#[test]
fn tampering_is_caught() {
    let signed = sign(TEXT, &[&peter()]).unwrap();
    let tampered = signed.replacen("cryptography", "cryptographY", 1);
    assert!(matches!(
        open(&tampered, &[peter_key()]),
        Err(NoteError::InvalidSignature { .. })
    ));
    // A signature from an unknown key only: refused.
    assert!(matches!(
        open(&signed, &[enoch_key()]),
        Err(NoteError::NoKnownSignature { .. })
    ));
    // A freshly generated key with Peter's name has another id: unknown, so refused.
    let other = Signer::from_seed("PeterNeumann", &[42; 32]).unwrap();
    let forged = sign(TEXT, &[&other]).unwrap();
    assert!(matches!(
        open(&forged, &[peter_key()]),
        Err(NoteError::NoKnownSignature { .. })
    ));
}

/// The C2SP spec's example: the text keeps its inner blank line; the key is not published,
/// so the note opens with no known key and is refused.
#[test]
fn c2sp_spec_example_parses() {
    let example = "Ognuno sta solo sul cuor della terra\n\
                   trafitto da un raggio di sole:\n\
                   \n\
                   ed \u{e8} subito sera.\n\
                   \n\
                   \u{2014} quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";
    let parsed = Note::parse(example).unwrap();
    assert_eq!(
        parsed.text(),
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n"
    );
    assert_eq!(parsed.signatures().len(), 1);
    let signature = &parsed.signatures()[0];
    assert_eq!(signature.name, "quasimodo.example/salvatore");
    assert_eq!(signature.signature.len(), 64, "an Ed25519 signature");
    assert!(matches!(
        note::open(example, &[peter_key()]),
        Err(NoteError::NoKnownSignature { .. })
    ));
}

#[test]
fn sign_and_open_round_trip_with_several_signers() {
    let a = Signer::from_seed("a.example/log", &[1; 32]).unwrap();
    let b = Signer::from_seed("b.example/witness", &[2; 32]).unwrap();
    let text = "line one\n\nline three after a blank line\n";
    let signed = sign(text, &[&a, &b]).unwrap();
    let opened = open(&signed, &[b.verifier_key()]).unwrap();
    assert_eq!(opened.text, text);
    assert_eq!(opened.verified_by, vec![b.verifier_key()]);
    let opened = open(&signed, &[a.verifier_key(), b.verifier_key()]).unwrap();
    assert_eq!(opened.verified_by.len(), 2);
}
