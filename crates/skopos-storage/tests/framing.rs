//! The framing, repair, listing, lock and atomic-rename behaviour the three
//! stores rely on, tested once here with plain bytes (the stores test their
//! own records and their crash/replay behaviour on top).

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use skopos_storage::{
    delete_segments_upto, frame, list_segments, read_file, remove_leftover_tmp, replay_file,
    segment_path, tmp_path, write_atomic, AtomicFile, Damage, DirLock, Error, FileRead, Format,
    FsyncPolicy, Legacy, Wal, WalOptions, HEADER_LEN, RECORD_HEADER,
};

const FORMAT: Format = Format {
    magic: *b"TEST",
    version: 2,
    legacy: Some(Legacy {
        version: 1,
        record_type: 7,
    }),
};

/// Records of varied types and lengths, the empty payload among them.
fn records(n: usize) -> Vec<(u8, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                (i % 3) as u8 + 1,
                (0..i * 7 % 50).map(|b| b as u8).collect(),
            )
        })
        .collect()
}

fn segment_bytes(recs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut data = FORMAT.header().to_vec();
    for (t, p) in recs {
        frame(&mut data, *t, |b| b.extend_from_slice(p));
    }
    data
}

fn read_all(path: &Path) -> (Vec<(u8, Vec<u8>)>, FileRead) {
    let mut got = Vec::new();
    let st = read_file(path, &FORMAT, &mut |t, p| {
        got.push((t, p.to_vec()));
        true
    })
    .unwrap();
    (got, st)
}

fn replay_all(path: &Path) -> (Vec<(u8, Vec<u8>)>, FileRead) {
    let mut got = Vec::new();
    let st = replay_file(path, &FORMAT, true, &mut |t, p| {
        got.push((t, p.to_vec()));
        true
    })
    .unwrap();
    (got, st)
}

#[test]
fn records_round_trip_with_their_types_including_empty_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 0);
    let recs = records(20);
    assert!(recs.iter().any(|r| r.1.is_empty()));
    fs::write(&path, segment_bytes(&recs)).unwrap();
    let (got, st) = read_all(&path);
    assert_eq!(got, recs);
    assert_eq!(st.damage, None);
    assert_eq!(st.records, 20);
    assert_eq!(st.good_len, st.file_len);
}

#[test]
fn the_framing_is_len_crc_type_payload() {
    let mut buf = Vec::new();
    frame(&mut buf, 5, |b| b.extend_from_slice(b"abc"));
    assert_eq!(buf.len(), RECORD_HEADER + 3);
    assert_eq!(&buf[..4], &3u32.to_le_bytes());
    assert_eq!(&buf[4..8], &crc32fast::hash(b"\x05abc").to_le_bytes());
    assert_eq!(&buf[8..], b"\x05abc");
}

#[test]
fn a_torn_tail_at_every_byte_keeps_the_records_before_it_and_is_cut() {
    let recs = records(6);
    let data = segment_bytes(&recs);
    // Where each record ends.
    let mut ends = vec![HEADER_LEN as usize];
    for (_, p) in &recs {
        ends.push(ends.last().unwrap() + RECORD_HEADER + p.len());
    }
    let dir = tempfile::tempdir().unwrap();
    for cut in HEADER_LEN as usize..data.len() {
        let path = segment_path(dir.path(), cut as u64);
        fs::write(&path, &data[..cut]).unwrap();
        let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
        let (got, st) = replay_all(&path);
        assert_eq!(got, recs[..whole], "cut at {cut}");
        let torn = !ends.contains(&cut);
        assert_eq!(st.damage.is_some(), torn, "cut at {cut}");
        assert_eq!(st.good_len as usize, ends[whole]);
        // Repaired: the file ends at the last good record and reads clean.
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, ends[whole]);
        let (again, st) = read_all(&path);
        assert_eq!((again.len(), st.damage), (whole, None));
    }
}

#[test]
fn a_flipped_bit_ends_the_file_at_the_record_before_it() {
    let recs = records(5);
    let data = segment_bytes(&recs);
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 1);
    let third = HEADER_LEN as usize
        + recs[..2]
            .iter()
            .map(|r| RECORD_HEADER + r.1.len())
            .sum::<usize>();
    // A bit of the type byte, of the payload, of the CRC.
    for at in [third + 8, third + RECORD_HEADER + 1, third + 5] {
        let mut bad = data.clone();
        bad[at] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        let (got, st) = replay_all(&path);
        assert_eq!(got, recs[..2]);
        assert_eq!(st.damage, Some(Damage::Checksum), "flip at {at}");
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, third);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// Any truncation and byte flip yields a prefix of the records, never
    /// a panic, and a flip is always noticed.
    #[test]
    fn damage_yields_a_prefix(cut in 0usize..2000, flip in proptest::option::of((0usize..2000, 1u8..=255))) {
        let recs = records(12);
        let mut data = segment_bytes(&recs);
        let flip = flip.map(|(at, x)| (at % data.len(), x));
        if let Some((at, x)) = flip {
            data[at] ^= x;
        }
        data.truncate(data.len().saturating_sub(cut % data.len()));
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 0);
        fs::write(&path, &data).unwrap();
        let (got, st) = read_all(&path);
        prop_assert!(got.len() <= recs.len());
        prop_assert_eq!(&got[..], &recs[..got.len()]);
        prop_assert!(st.good_len <= data.len() as u64);
        if flip.is_some_and(|(at, _)| at < data.len()) {
            prop_assert!(st.damage.is_some());
        }
    }
}

#[test]
fn a_payload_the_reader_cannot_decode_ends_the_file_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 0);
    let recs = records(4);
    fs::write(&path, segment_bytes(&recs)).unwrap();
    let mut seen = 0;
    let st = replay_file(&path, &FORMAT, true, &mut |_, _| {
        seen += 1;
        seen < 3
    })
    .unwrap();
    assert_eq!((st.records, st.damage), (2, Some(Damage::Undecodable)));
    assert_eq!(read_all(&path).0, recs[..2]);
}

#[test]
fn empty_and_header_only_segments() {
    let dir = tempfile::tempdir().unwrap();
    // Zero bytes, or a header cut short: torn as it was created, removed.
    for (n, len) in [(0u64, 0usize), (1, 5)] {
        let path = segment_path(dir.path(), n);
        fs::write(&path, &FORMAT.header()[..len]).unwrap();
        let (got, st) = replay_all(&path);
        assert!(got.is_empty());
        assert_eq!(st.damage, Some(Damage::TornHeader));
        assert!(!path.exists());
    }
    // A header alone: an empty segment, nothing wrong with it.
    let path = segment_path(dir.path(), 2);
    fs::write(&path, FORMAT.header()).unwrap();
    let (got, st) = replay_all(&path);
    assert!(got.is_empty());
    assert_eq!((st.damage, st.good_len), (None, HEADER_LEN));
    assert!(path.exists());
}

#[test]
fn an_unknown_version_or_magic_is_set_aside_not_replayed_and_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(3);
    let mut data = segment_bytes(&recs);
    data[4..8].copy_from_slice(&9u32.to_le_bytes());
    let path = segment_path(dir.path(), 3);
    fs::write(&path, &data).unwrap();
    let (got, st) = replay_all(&path);
    assert!(got.is_empty());
    assert_eq!(
        st.damage,
        Some(Damage::Header {
            magic: *b"TEST",
            version: 9
        })
    );
    assert!(!path.exists());
    let aside = dir.path().join("00000003.corrupt");
    assert_eq!(fs::read(&aside).unwrap(), data);
    assert!(list_segments(dir.path()).unwrap().is_empty());
    // Without repair, nothing moves.
    let other = Format {
        magic: *b"ELSE",
        ..FORMAT
    };
    let path = segment_path(dir.path(), 4);
    fs::write(&path, segment_bytes(&recs)).unwrap();
    let st = replay_file(&path, &other, false, &mut |_, _| true).unwrap();
    assert!(matches!(st.damage, Some(Damage::Header { .. })));
    assert!(path.exists());
}

#[test]
fn the_legacy_version_reads_untyped_records_with_its_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(dir.path(), 0);
    let mut data = b"TEST".to_vec();
    data.extend_from_slice(&1u32.to_le_bytes());
    for p in [&b"one"[..], b"", b"three"] {
        data.extend_from_slice(&(p.len() as u32).to_le_bytes());
        data.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
        data.extend_from_slice(p);
    }
    let full = data.len();
    data.extend_from_slice(&[3, 0, 0]);
    fs::write(&path, &data).unwrap();
    let (got, st) = replay_all(&path);
    assert_eq!(
        got,
        vec![
            (7, b"one".to_vec()),
            (7, Vec::new()),
            (7, b"three".to_vec())
        ]
    );
    assert_eq!(st.damage, Some(Damage::TornRecord));
    assert_eq!(fs::metadata(&path).unwrap().len() as usize, full);
}

#[test]
fn listing_takes_only_segment_names_and_deletes_up_to_a_number() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "00000003",
        "00000001",
        "00000002",
        "123456789",
        "7",
        "+0000004",
        "00000005.tmp",
        "00000006.corrupt",
        "checkpoint.00000002",
        "lock",
    ] {
        fs::write(dir.path().join(name), b"").unwrap();
    }
    let nums: Vec<u64> = list_segments(dir.path())
        .unwrap()
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(nums, [1, 2, 3, 123_456_789]);
    assert_eq!(delete_segments_upto(dir.path(), 2).unwrap(), 2);
    let nums: Vec<u64> = list_segments(dir.path())
        .unwrap()
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(nums, [3, 123_456_789]);
    assert!(dir.path().join("checkpoint.00000002").exists());
    assert!(list_segments(&dir.path().join("missing"))
        .unwrap()
        .is_empty());
}

fn opts(fsync: FsyncPolicy, segment_size: u64) -> WalOptions {
    WalOptions {
        fsync,
        segment_size,
    }
}

fn framed(typ: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    frame(&mut b, typ, |b| b.extend_from_slice(payload));
    b
}

fn all_records(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for (n, p) in list_segments(dir).unwrap() {
        read_file(&p, &FORMAT, &mut |_, pl| {
            out.push((n, pl.to_vec()));
            true
        })
        .unwrap();
    }
    out
}

#[test]
fn the_writer_rotates_at_its_size_and_a_reopen_continues_the_newest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), FORMAT, opts(FsyncPolicy::Never, 4096), 5).unwrap();
    assert_eq!(wal.segment(), 5);
    let payload = vec![1u8; 1000];
    for _ in 0..9 {
        wal.log(&framed(1, &payload)).unwrap();
    }
    // 4 records of 1009 bytes fit after the header in 4096.
    assert_eq!(wal.segment(), 7);
    assert_eq!(wal.rotate().unwrap(), 7);
    wal.log(&framed(2, b"last")).unwrap();
    drop(wal);
    let recs = all_records(dir.path());
    let per_seg: Vec<u64> = recs.iter().map(|r| r.0).collect();
    assert_eq!(per_seg, [5, 5, 5, 5, 6, 6, 6, 6, 7, 8]);
    let wal = Wal::open(dir.path(), FORMAT, opts(FsyncPolicy::Never, 4096), 0).unwrap();
    assert_eq!(wal.segment(), 8, "continues the newest segment");
    wal.log(&framed(2, b"more")).unwrap();
    drop(wal);
    let last: Vec<_> = all_records(dir.path())
        .into_iter()
        .filter(|r| r.0 == 8)
        .map(|r| r.1)
        .collect();
    assert_eq!(last, [b"last".to_vec(), b"more".to_vec()]);
}

#[test]
fn the_writer_never_appends_to_a_legacy_segment_or_one_below_its_floor() {
    let dir = tempfile::tempdir().unwrap();
    let mut legacy = b"TEST".to_vec();
    legacy.extend_from_slice(&1u32.to_le_bytes());
    fs::write(segment_path(dir.path(), 3), &legacy).unwrap();
    let wal = Wal::open(dir.path(), FORMAT, WalOptions::default(), 0).unwrap();
    assert_eq!(wal.segment(), 4);
    drop(wal);
    let wal = Wal::open(dir.path(), FORMAT, WalOptions::default(), 10).unwrap();
    assert_eq!(wal.segment(), 10);
    drop(wal);
    assert_eq!(fs::read(segment_path(dir.path(), 3)).unwrap(), legacy);
}

#[test]
fn a_closed_writer_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), FORMAT, WalOptions::default(), 0).unwrap();
    wal.log(&framed(1, b"x")).unwrap();
    wal.close().unwrap();
    assert!(matches!(
        wal.log(&framed(1, b"y")),
        Err(Error::Closed { dir: d }) if d == dir.path()
    ));
    assert!(matches!(wal.rotate(), Err(Error::Closed { .. })));
    assert_eq!(all_records(dir.path()).len(), 1);
}

#[test]
fn the_fsync_policy_decides_when_the_writer_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let always = Wal::open(
        &dir.path().join("a"),
        FORMAT,
        opts(FsyncPolicy::Always, 1 << 20),
        0,
    )
    .unwrap();
    let never = Wal::open(
        &dir.path().join("n"),
        FORMAT,
        opts(FsyncPolicy::Never, 1 << 20),
        0,
    )
    .unwrap();
    for _ in 0..5 {
        always.log(&framed(1, b"r")).unwrap();
        never.log(&framed(1, b"r")).unwrap();
    }
    assert_eq!(always.fsyncs(), 5);
    assert_eq!(never.fsyncs(), 0);
    let interval = Wal::open(
        &dir.path().join("i"),
        FORMAT,
        opts(
            FsyncPolicy::Interval(std::time::Duration::from_millis(5)),
            1 << 20,
        ),
        0,
    )
    .unwrap();
    interval.log(&framed(1, b"r")).unwrap();
    let t0 = std::time::Instant::now();
    while interval.fsyncs() == 0 {
        assert!(t0.elapsed().as_secs() < 10, "the fsync thread never ran");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_second_lock_on_a_directory_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let first = DirLock::acquire(dir.path()).unwrap();
    match DirLock::acquire(dir.path()) {
        Err(e @ Error::Locked { .. }) => {
            let Error::Locked { dir: d, .. } = &e else {
                unreachable!()
            };
            assert_eq!(d, dir.path());
            assert!(e.to_string().contains("lock"), "{e}");
        }
        other => panic!("second lock: {other:?}"),
    }
    drop(first);
    DirLock::acquire(dir.path()).unwrap();
}

#[test]
fn a_crash_before_the_rename_leaves_the_old_content_and_the_tmp_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    write_atomic(&path, b"old").unwrap();
    // Written and fsynced under .tmp, then the process dies before rename.
    let mut f = AtomicFile::create(&path).unwrap();
    f.write_all(b"new, longer content").unwrap();
    let (tmp, _) = f.finish().unwrap();
    assert_eq!(tmp, tmp_path(&path));
    assert_eq!(fs::read(&path).unwrap(), b"old");
    // A torn .tmp (the crash came mid-write) is no different.
    fs::write(dir.path().join("other.tmp"), b"half").unwrap();
    assert_eq!(remove_leftover_tmp(dir.path()).unwrap(), 2);
    assert!(!tmp.exists());
    assert_eq!(fs::read(&path).unwrap(), b"old");
}

#[test]
fn a_crash_after_the_rename_before_the_dir_sync_leaves_the_new_content_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    write_atomic(&path, b"old").unwrap();
    let mut f = AtomicFile::create(&path).unwrap();
    f.write_all(b"new").unwrap();
    let (tmp, dest) = f.finish().unwrap();
    skopos_storage::rename(&tmp, &dest).unwrap();
    // (no directory fsync: the rename is all that happened)
    assert_eq!(remove_leftover_tmp(dir.path()).unwrap(), 0);
    assert_eq!(fs::read(&path).unwrap(), b"new");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["state.json"]);
}

#[test]
fn an_atomic_file_dropped_without_commit_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    {
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"abandoned").unwrap();
    }
    assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
    // Leftover directories (a block being written) are removed too.
    fs::create_dir_all(dir.path().join("block.tmp/inner")).unwrap();
    fs::write(dir.path().join("block.tmp/inner/x"), b"x").unwrap();
    assert_eq!(remove_leftover_tmp(dir.path()).unwrap(), 1);
    assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
}
