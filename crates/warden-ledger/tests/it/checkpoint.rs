//! C2SP `tlog-checkpoint` bodies: the spec example, strict parsing, signing and opening.

use warden_ledger::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use warden_ledger::hash::{from_base64, leaf_hash};
use warden_ledger::note::{NoteError, Signer};

use crate::{peter, peter_key};

const SPEC_BODY: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

#[test]
fn spec_example_body_parses_and_round_trips() {
    let checkpoint = Checkpoint::parse(SPEC_BODY).unwrap();
    assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
    assert_eq!(checkpoint.size, 20_852_163);
    assert_eq!(
        Some(checkpoint.root),
        from_base64("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    );
    assert!(checkpoint.extensions.is_empty());
    assert_eq!(checkpoint.to_body(), SPEC_BODY);
}

#[test]
fn extension_lines_round_trip() {
    let body = format!("{SPEC_BODY}ext one\next two\n");
    let checkpoint = Checkpoint::parse(&body).unwrap();
    assert_eq!(checkpoint.extensions, ["ext one", "ext two"]);
    assert_eq!(checkpoint.to_body(), body);
}

#[test]
fn malformed_bodies_are_refused() {
    let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    for body in [
        String::new(),
        "origin\n5\n".to_owned(),
        format!("origin\n5\n{root}"),
        format!("\n5\n{root}\n"),
        format!("origin\n05\n{root}\n"),
        format!("origin\n+5\n{root}\n"),
        format!("origin\n-5\n{root}\n"),
        format!("origin\n\n{root}\n"),
        format!("origin\n18446744073709551616\n{root}\n"),
        "origin\n5\nZG9uJ3QgY2FyZSAx\n".to_owned(),
        format!("origin\n5\n{}\n", root.trim_end_matches('=')),
        format!("origin\n5\n{root}\n\n"),
        format!("origin\n5\n{root}\next\n\n"),
        format!("ori\rgin\n5\n{root}\n"),
    ] {
        assert!(
            matches!(
                Checkpoint::parse(&body),
                Err(CheckpointError::Malformed { .. })
            ),
            "accepted {body:?}"
        );
    }
    assert_eq!(
        Checkpoint::parse(&format!("o\n0\n{root}\n")).unwrap().size,
        0
    );
}

#[test]
fn signed_checkpoints_open_only_with_the_right_key() {
    let checkpoint = Checkpoint::new("warden.example/audit/acme", 3, leaf_hash(b"root"));
    let signed = SignedCheckpoint::sign(&checkpoint, &[&peter()]).unwrap();
    assert!(signed.starts_with(&checkpoint.to_body()));
    let opened = SignedCheckpoint::open(&signed, &[peter_key()]).unwrap();
    assert_eq!(opened.checkpoint, checkpoint);
    assert_eq!(opened.verified_by, vec![peter_key()]);

    let stranger = Signer::from_seed("warden.example", &[3; 32]).unwrap();
    assert!(matches!(
        SignedCheckpoint::open(&signed, &[stranger.verifier_key()]),
        Err(CheckpointError::Note(NoteError::NoKnownSignature { .. }))
    ));
    let tampered = signed.replacen("\n3\n", "\n4\n", 1);
    assert!(matches!(
        SignedCheckpoint::open(&tampered, &[peter_key()]),
        Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
    ));
}

#[test]
fn a_checkpoint_that_would_not_round_trip_is_not_signed() {
    let mut checkpoint = Checkpoint::new("two\nlines", 1, leaf_hash(b"x"));
    assert!(matches!(
        SignedCheckpoint::sign(&checkpoint, &[&peter()]),
        Err(CheckpointError::Malformed { .. })
    ));
    checkpoint.origin = "fine".into();
    checkpoint.extensions.push(String::new());
    assert!(SignedCheckpoint::sign(&checkpoint, &[&peter()]).is_err());
}

/// A signed note whose text is not a checkpoint body verifies as a note but is refused.
#[test]
fn a_signed_note_that_is_not_a_checkpoint_is_refused() {
    let signed = warden_ledger::note::sign("just some text\n", &[&peter()]).unwrap();
    assert!(matches!(
        SignedCheckpoint::open(&signed, &[peter_key()]),
        Err(CheckpointError::Malformed { .. })
    ));
}
