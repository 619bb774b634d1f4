//! The Docker source against the real Docker engine of this machine (a real
//! peer: the test fails, it does not skip, when Docker is missing). No
//! registry is needed: the image is `skopos-loggen` plus the shared
//! libraries it links, packed into a tar and `docker import`ed.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use skopos_agent::Config;

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker (is it installed and running?): {e}"));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the test's containers and image, also when the test fails.
struct Cleanup {
    containers: Vec<String>,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker")
                .args(["rm", "-f", c])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Packs `skopos-loggen`, its shared libraries and the dynamic loader into
/// an image tagged `tag`.
fn build_image(tag: &str) {
    let bin = Path::new(env!("CARGO_BIN_EXE_skopos-loggen"));
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(bin, root.path().join("loggen")).unwrap();
    let ldd = Command::new("ldd").arg(bin).output().expect("ldd");
    let ldd = String::from_utf8_lossy(&ldd.stdout).into_owned();
    let mut copied = 0;
    for line in ldd.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line
            .split("=>")
            .last()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap_or("");
        if !path.starts_with('/') {
            continue;
        }
        let dest = root.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(path, &dest).unwrap(); // follows symlinks
        copied += 1;
    }
    assert!(copied >= 2, "ldd found no libraries: {ldd}");
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = Command::new("docker")
        .args(["import", "--change", r#"ENTRYPOINT ["/loggen"]"#, "-", tag])
        .stdin(tar.stdout.take().unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(tar.wait().unwrap().success(), "tar failed");
    assert!(status.success(), "docker import failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_container_logs_arrive_with_labels_and_survive_a_restart() {
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let image = format!("skopos-test-loggen:t{unique}");
    let name = format!("skopos-test-loggen-{unique}");
    let mut cleanup = Cleanup {
        containers: vec![name.clone()],
        image: image.clone(),
    };
    build_image(&image);

    let rx = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
server: {}
state_dir: {}
batch: {{max_bytes: 64KiB, max_wait: 50ms}}
metrics_listen: "off"
sources:
  - type: docker
    name: containers
    filters: {{name: ["{name}"]}}
    labels: {{job: docker}}
    refresh_interval: 200ms
"#,
        rx.url,
        dir.path().join("state").display()
    );
    let cfg = || Config::parse(&yaml).unwrap();
    // The agent is running before the container starts: it is discovered.
    let agent = start(cfg()).await;
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "com.docker.compose.project=skopostest",
        "--label",
        "com.docker.compose.service=gen",
        &image,
        "hello",
        "5",
        "2",
        "30",
    ]);
    let got = rx.wait_lines(7, Duration::from_secs(20)).await;
    let m = agent.metrics().clone();
    assert_eq!(
        m.sources[0]
            .containers_followed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    agent.stop().await.unwrap();

    let entries = rx.got();
    let stream = |s: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e.labels.contains(&format!("stream=\"{s}\"")))
            .map(|e| e.line.clone())
            .collect()
    };
    assert_eq!(
        stream("stdout"),
        [
            "hello out 1",
            "hello out 2",
            "hello out 3",
            "hello out 4",
            "hello out 5"
        ]
    );
    assert_eq!(stream("stderr"), ["hello err 1", "hello err 2"]);
    assert_eq!(got.len(), 7);
    let want_labels = format!(
        "{{compose_project=\"skopostest\", compose_service=\"gen\", container_name=\"{name}\", image=\"{image}\", job=\"docker\", stream=\"stdout\"}}"
    );
    assert_eq!(
        entries
            .iter()
            .find(|e| e.line == "hello out 1")
            .unwrap()
            .labels,
        want_labels
    );
    // Docker's timestamps, not the agent's read time, and increasing.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let out: Vec<i64> = entries
        .iter()
        .filter(|e| e.labels.contains("stdout"))
        .map(|e| e.ts_ns)
        .collect();
    assert!(out.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
    assert!(out.iter().all(|&t| t > now - 60_000_000_000 && t <= now));

    // A restarted agent resumes after the last shipped timestamp: nothing
    // is sent again.
    let agent = start(cfg()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    agent.stop().await.unwrap();
    assert_eq!(rx.lines().len(), 7, "{:?}", rx.lines());

    // --once with a fresh state: the logs up to now, then it returns.
    let rx2 = receiver().await;
    let yaml2 = yaml.replace(&rx.url, &rx2.url).replace(
        &dir.path().join("state").display().to_string(),
        &dir.path().join("state2").display().to_string(),
    );
    let once = skopos_agent::RunOptions {
        once: true,
        once_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let report = skopos_agent::Agent::start(Config::parse(&yaml2).unwrap(), once)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    let mut again = rx2.lines();
    again.sort();
    let mut first = rx.lines();
    first.sort();
    assert_eq!(again, first);

    docker(&["rm", "-f", &name]);
    cleanup.containers.clear();
}
