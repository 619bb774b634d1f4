//! The `skopos tsdb` commands from the outside: import a file with
//! timestamps, dump it back, inspect it; a malformed file is an error naming
//! the file and line.

use std::process::Command;

fn skopos(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skopos"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn import_then_dump_and_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let file = tmp.path().join("in.om");
    let mut text = String::from("# TYPE http_requests counter\n");
    for i in 0..500 {
        // Three days of hourly samples, in seconds as OpenMetrics has them.
        let t = 1_700_000_000 + i * 3600 / 4;
        text.push_str(&format!(
            "http_requests_total{{code=\"200\"}} {} {t}\n",
            i * 2
        ));
        text.push_str(&format!("http_requests_total{{code=\"500\"}} {i} {t}\n"));
    }
    text.push_str("# EOF\n");
    std::fs::write(&file, &text).unwrap();
    let out = skopos(&[
        "tsdb",
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 1000 samples"));

    let out = skopos(&[
        "tsdb",
        "dump",
        "--data-dir",
        data.to_str().unwrap(),
        "--match",
        "http_requests_total{code=\"500\"}",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 500);

    // Times as RFC 3339 or milliseconds; the defaults are the whole store.
    let out = skopos(&[
        "tsdb",
        "dump",
        "--data-dir",
        data.to_str().unwrap(),
        "--match",
        "http_requests_total{code=\"500\"}",
        "--min-time",
        "2023-11-14T22:13:20Z",
        "--max-time",
        "1700000900000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let help = skopos(&["tsdb", "dump", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[default: the earliest stored]"), "{help}");
    assert!(!help.contains("4611686018427387904"), "{help}");

    // Piped into a reader that goes away (`| head -1`): a quiet end, as Unix
    // tools have, not a panic about a broken pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_skopos"))
        .args(["tsdb", "dump", "--data-dir", data.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
    assert_eq!(
        lines[0],
        "http_requests_total{code=\"500\"} 0 1700000000000"
    );
    assert_eq!(
        lines[499],
        format!(
            "http_requests_total{{code=\"500\"}} 499 {}",
            (1_700_000_000i64 + 499 * 900) * 1000
        )
    );

    let out = skopos(&[
        "tsdb",
        "inspect",
        "--data-dir",
        data.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = v.to_string();
    assert!(
        text.contains("1000"),
        "inspect should count 1000 samples: {text}"
    );
}

#[test]
fn malformed_import_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.prom");
    std::fs::write(
        &file,
        "ok_metric 1 1700000000000\nbroken{ 2 1700000000000\n",
    )
    .unwrap();
    let data = tmp.path().join("data");
    let out = skopos(&[
        "tsdb",
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.prom") && err.contains("line 2"), "{err}");

    std::fs::write(&file, "with_ts 1 1700000000000\nwithout_ts 2\n").unwrap();
    let out = skopos(&[
        "tsdb",
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without_ts") && err.contains("no timestamp"),
        "{err}"
    );
}

#[test]
fn bad_flag_values_are_named() {
    let out = skopos(&[
        "server",
        "--retention.time",
        "forever",
        "--data-dir",
        "/nonexistent/x",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--retention.time") && err.contains("forever"),
        "{err}"
    );
}
