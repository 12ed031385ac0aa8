//! C2SP `tlog-proof` files: the spec example's syntax, round trips, and verification.

use warden_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use warden_ledger::hash::{from_base64, leaf_hash, to_base64};
use warden_ledger::proof::inclusion;
use warden_ledger::tlog_proof::{Leaf, TlogProof, TlogProofError, verify};

use crate::{StoredTree, peter, peter_key};

/// The example from the spec, verbatim (its signatures are elided with `[...]`, so it can
/// be parsed but not verified).
const SPEC_EXAMPLE: &str = "c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

\u{2014} example.com/fancylog hI2DJw[...]1roloI=
\u{2014} witness1.example mJirIklj[...]qY9v2B/5bg==
\u{2014} witness2.example TnKKVHLX[...]xwYwrSjgow==
\u{2014} witness3.example S4X82uH5[...]3oEcROGLFQ==
";

#[test]
fn spec_example_parses_and_formats_back() {
    let proof = TlogProof::parse(SPEC_EXAMPLE).unwrap();
    assert_eq!(proof.index, 73894);
    assert_eq!(proof.hashes.len(), 5);
    assert_eq!(
        Some(proof.hashes[0]),
        from_base64("gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=")
    );
    assert_eq!(proof.extra.as_ref().map(Vec::len), Some(39));
    assert!(
        proof
            .checkpoint
            .starts_with("example.com/fancylog\n109482\n")
    );
    assert_eq!(proof.format(), SPEC_EXAMPLE);
    // Its signatures are elided, so verifying must fail at the checkpoint.
    assert!(matches!(
        verify(SPEC_EXAMPLE, Leaf::Hash([0; 32]), &[peter_key()]),
        Err(TlogProofError::Checkpoint(_))
    ));
}

/// transparency-dev/merkle's TestVerifyTLogProofErrors, plus a few more.
#[test]
fn malformed_files_are_refused() {
    let too_long = to_base64(&[0; 32]) + "AAAA";
    for text in [
        "wrong-header\nindex 0\n\ncheckpoint\n".to_owned(),
        "c2sp.org/tlog-proof@v1\nextra !!notbase64!!\nindex 0\n\ncheckpoint\n".to_owned(),
        "c2sp.org/tlog-proof@v1\n\n\ncheckpoint\n".to_owned(),
        "c2sp.org/tlog-proof@v1\nindex notanumber\n\ncheckpoint\n".to_owned(),
        "c2sp.org/tlog-proof@v1\nindex -5\n\ncheckpoint\n".to_owned(),
        "c2sp.org/tlog-proof@v1\nindex 05\n\ncheckpoint\n".to_owned(),
        "c2sp.org/tlog-proof@v1\nindex 0\n!!notbase64!!\n\ncheckpoint\n".to_owned(),
        format!("c2sp.org/tlog-proof@v1\nindex 0\n{too_long}\n\ncheckpoint\n"),
        "c2sp.org/tlog-proof@v1\nindex 0\n".to_owned(),
        "c2sp.org/tlog-proof@v1\nindex 0\n\n".to_owned(),
    ] {
        assert!(
            matches!(
                TlogProof::parse(&text),
                Err(TlogProofError::Malformed { .. })
            ),
            "accepted {text:?}"
        );
    }
}

#[test]
fn a_proof_file_verifies_for_its_entry_only() {
    let tree = StoredTree::new(21);
    let entry = 13_u64.to_be_bytes(); // StoredTree's leaf 13 is the hash of these bytes.
    let checkpoint = Checkpoint::new("warden.example/audit/acme", 21, tree.root(21));
    let note = SignedCheckpoint::sign(&checkpoint, &[&peter()]).unwrap();
    let file = TlogProof {
        extra: Some(b"context".to_vec()),
        index: 13,
        hashes: tree.prove(&inclusion(13, 21).unwrap()),
        checkpoint: note,
    }
    .format();
    assert_eq!(TlogProof::parse(&file).unwrap().format(), file);

    let verified = verify(&file, Leaf::Data(&entry), &[peter_key()]).unwrap();
    assert_eq!(verified.index, 13);
    assert_eq!(verified.extra.as_deref(), Some(&b"context"[..]));
    assert_eq!(verified.checkpoint.checkpoint, checkpoint);
    assert!(verify(&file, Leaf::Hash(leaf_hash(&entry)), &[peter_key()]).is_ok());

    assert!(matches!(
        verify(&file, Leaf::Data(b"another entry"), &[peter_key()]),
        Err(TlogProofError::Inclusion(_))
    ));
    let other_key = warden_ledger::note::Signer::from_seed("x", &[5; 32]).unwrap();
    assert!(matches!(
        verify(&file, Leaf::Data(&entry), &[other_key.verifier_key()]),
        Err(TlogProofError::Checkpoint(_))
    ));
    let wrong_index = file.replacen("index 13\n", "index 12\n", 1);
    assert!(verify(&wrong_index, Leaf::Data(&entry), &[peter_key()]).is_err());
}

#[test]
fn a_file_without_extra_has_no_extra_line() {
    let proof = TlogProof {
        extra: None,
        index: 0,
        hashes: vec![],
        checkpoint: "c\n".into(),
    };
    assert_eq!(proof.format(), "c2sp.org/tlog-proof@v1\nindex 0\n\nc\n");
    assert_eq!(TlogProof::parse(&proof.format()).unwrap(), proof);
}
