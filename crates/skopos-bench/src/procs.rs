//! The servers under test as child processes: start on a free loopback port,
//! wait until ready, read CPU time and resident memory from `/proc`, stop
//! gracefully.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Skopos,
    Prometheus,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Skopos => "skopos",
            Kind::Prometheus => "prometheus",
        }
    }
}

/// Paths of the programs under test.
#[derive(Clone, Debug)]
pub struct Programs {
    pub skopos: PathBuf,
    pub prometheus: PathBuf,
    pub promtool: PathBuf,
}

/// A running server.
pub struct Server {
    pub kind: Kind,
    pub port: u16,
    pub log: PathBuf,
    child: Child,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

impl Server {
    /// Starts `kind` on `dir` (created if missing), logging to `<kind>-<tag>.log` beside `dir`.
    pub fn start(programs: &Programs, kind: Kind, dir: &Path, tag: &str) -> anyhow::Result<Server> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = match kind {
            Kind::Skopos => {
                let mut c = Command::new(&programs.skopos);
                c.arg("server")
                    .arg("--data-dir")
                    .arg(dir)
                    .args(["--listen", &listen])
                    .args(["--otlp-http-listen", "off", "--otlp-grpc-listen", "off"])
                    .args(["--self-scrape-interval", "off"]);
                c
            }
            Kind::Prometheus => {
                let config = dir.join("prometheus.yml");
                if !config.exists() {
                    // No scrape jobs: the server only receives remote write.
                    fs::write(&config, "global:\n  scrape_interval: 15s\n")?;
                }
                let mut c = Command::new(&programs.prometheus);
                c.arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.join("data").display()
                    ))
                    .arg(format!("--web.listen-address={listen}"))
                    .arg("--web.enable-remote-write-receiver")
                    .arg("--log.level=warn");
                c
            }
        };
        let log = dir.with_file_name(format!("{}-{tag}.log", kind.name()));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", kind.name()))?;
        Ok(Server {
            kind,
            port,
            log,
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Polls `GET /-/ready` until it answers 200; returns how long since `since`.
    pub async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        since: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let url = format!("{}/-/ready", self.base_url());
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before it was ready; log: {}",
                    self.kind.name(),
                    self.log_tail()
                );
            }
            if let Ok(resp) = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if resp.status().as_u16() == 200 {
                    return Ok(since.elapsed());
                }
            }
            if since.elapsed() > timeout {
                bail!(
                    "{} not ready after {timeout:?}; log: {}",
                    self.kind.name(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(self.pid())
    }

    /// `VmRSS` and `VmHWM` in bytes.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory(self.pid())
    }

    /// SIGTERM, then waits for a clean exit; returns how long it took.
    pub async fn stop(mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        // SAFETY: plain syscall on our own child's pid, which has not been reaped.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        if rc != 0 {
            bail!(
                "cannot signal {}: {}",
                self.kind.name(),
                std::io::Error::last_os_error()
            );
        }
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!(
                        "{} exited with {status} on SIGTERM; log: {}",
                        self.kind.name(),
                        self.log_tail()
                    );
                }
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{} did not stop within {timeout:?} of SIGTERM; killed it",
                    self.kind.name()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("{}\n{tail}", self.log.display())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A server left behind by an error path must not outlive the bench.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses; fields follow the last ')'.
    let rest = &stat[stat
        .rfind(')')
        .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?
        + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?
            .parse::<u64>()
            .context("bad /proc stat field")
    };
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok(total as f64 / hz)
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .context("bad /proc status field")?;
        Ok(kb * 1024)
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

/// Total bytes of the regular files under `path`.
pub fn dir_bytes(path: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        let m = memory(me).unwrap();
        assert!(m.rss > 0 && m.hwm >= m.rss);
    }
}
