//! The remote-write workload: node-exporter-like series, a few samples each,
//! encoded ahead of time so the load generator spends no CPU while the
//! receiving server is being measured.

use bytes::Bytes;
use skopos_model::{Labels, Sample, WriteBatch};

/// A small, fast, deterministic PRNG (SplitMix64). Benchmarks must produce
/// the same data on every run and for every server.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// How a metric family of node exporter spreads over extra labels.
#[derive(Clone, Copy)]
enum Shape {
    /// No labels beyond instance and job.
    Plain,
    /// `cpu` × `mode` with the given modes.
    CpuMode(&'static [&'static str]),
    /// `cpu` only.
    Cpu,
    /// `device` over network interfaces.
    NetDev,
    /// `device` over block devices.
    Disk,
    /// `device`, `fstype`, `mountpoint` over filesystems.
    Fs,
    /// `chip`, `sensor` over hardware monitors.
    Hwmon,
}

const CPUS: usize = 8;
const ALL_MODES: &[&str] = &[
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const GUEST_MODES: &[&str] = &["nice", "user"];
const NET_DEVICES: &[&str] = &["docker0", "eth0", "eth1", "lo"];
const DISKS: &[&str] = &["nvme0n1", "sda", "sdb"];
const FILESYSTEMS: &[(&str, &str, &str)] = &[
    ("/dev/nvme0n1p2", "ext4", "/"),
    ("/dev/nvme0n1p1", "vfat", "/boot/efi"),
    ("/dev/sda1", "xfs", "/var/lib/docker"),
    ("tmpfs", "tmpfs", "/run"),
];
const HWMON: &[(&str, &str)] = &[
    ("platform_coretemp_0", "temp1"),
    ("platform_coretemp_0", "temp2"),
    ("platform_coretemp_0", "temp3"),
    ("pci0000:00_0000:00:03_1", "temp1"),
];

/// About fifty node exporter metric names with the label shapes they have in
/// a real exposition.
const FAMILIES: &[(&str, Shape)] = &[
    ("node_cpu_seconds_total", Shape::CpuMode(ALL_MODES)),
    ("node_cpu_guest_seconds_total", Shape::CpuMode(GUEST_MODES)),
    ("node_cpu_scaling_frequency_hertz", Shape::Cpu),
    ("node_network_receive_bytes_total", Shape::NetDev),
    ("node_network_transmit_bytes_total", Shape::NetDev),
    ("node_network_receive_packets_total", Shape::NetDev),
    ("node_network_transmit_packets_total", Shape::NetDev),
    ("node_network_receive_errs_total", Shape::NetDev),
    ("node_network_transmit_errs_total", Shape::NetDev),
    ("node_network_receive_drop_total", Shape::NetDev),
    ("node_network_transmit_drop_total", Shape::NetDev),
    ("node_network_up", Shape::NetDev),
    ("node_network_mtu_bytes", Shape::NetDev),
    ("node_disk_read_bytes_total", Shape::Disk),
    ("node_disk_written_bytes_total", Shape::Disk),
    ("node_disk_reads_completed_total", Shape::Disk),
    ("node_disk_writes_completed_total", Shape::Disk),
    ("node_disk_io_time_seconds_total", Shape::Disk),
    ("node_disk_read_time_seconds_total", Shape::Disk),
    ("node_disk_write_time_seconds_total", Shape::Disk),
    ("node_disk_io_now", Shape::Disk),
    ("node_filesystem_avail_bytes", Shape::Fs),
    ("node_filesystem_free_bytes", Shape::Fs),
    ("node_filesystem_size_bytes", Shape::Fs),
    ("node_filesystem_files", Shape::Fs),
    ("node_filesystem_files_free", Shape::Fs),
    ("node_filesystem_readonly", Shape::Fs),
    ("node_hwmon_temp_celsius", Shape::Hwmon),
    ("node_hwmon_temp_crit_celsius", Shape::Hwmon),
    ("node_load1", Shape::Plain),
    ("node_load5", Shape::Plain),
    ("node_load15", Shape::Plain),
    ("node_memory_MemTotal_bytes", Shape::Plain),
    ("node_memory_MemFree_bytes", Shape::Plain),
    ("node_memory_MemAvailable_bytes", Shape::Plain),
    ("node_memory_Buffers_bytes", Shape::Plain),
    ("node_memory_Cached_bytes", Shape::Plain),
    ("node_memory_SwapTotal_bytes", Shape::Plain),
    ("node_memory_SwapFree_bytes", Shape::Plain),
    ("node_memory_Active_bytes", Shape::Plain),
    ("node_memory_Inactive_bytes", Shape::Plain),
    ("node_boot_time_seconds", Shape::Plain),
    ("node_time_seconds", Shape::Plain),
    ("node_context_switches_total", Shape::Plain),
    ("node_forks_total", Shape::Plain),
    ("node_intr_total", Shape::Plain),
    ("node_procs_running", Shape::Plain),
    ("node_procs_blocked", Shape::Plain),
    ("node_entropy_available_bits", Shape::Plain),
    ("node_filefd_allocated", Shape::Plain),
];

/// The label sets of one host, in a fixed order.
fn host_series(host: usize, out: &mut Vec<Labels>) {
    let instance = format!("host-{host}:9100");
    let base = |name: &str| {
        vec![
            ("__name__", name.to_string()),
            ("instance", instance.clone()),
            ("job", "node".to_string()),
        ]
    };
    for &(name, shape) in FAMILIES {
        match shape {
            Shape::Plain => out.push(Labels::from_pairs(base(name))),
            Shape::CpuMode(modes) => {
                for cpu in 0..CPUS {
                    for mode in modes {
                        let mut p = base(name);
                        p.push(("cpu", cpu.to_string()));
                        p.push(("mode", mode.to_string()));
                        out.push(Labels::from_pairs(p));
                    }
                }
            }
            Shape::Cpu => {
                for cpu in 0..CPUS {
                    let mut p = base(name);
                    p.push(("cpu", cpu.to_string()));
                    out.push(Labels::from_pairs(p));
                }
            }
            Shape::NetDev => {
                for dev in NET_DEVICES {
                    let mut p = base(name);
                    p.push(("device", dev.to_string()));
                    out.push(Labels::from_pairs(p));
                }
            }
            Shape::Disk => {
                for dev in DISKS {
                    let mut p = base(name);
                    p.push(("device", dev.to_string()));
                    out.push(Labels::from_pairs(p));
                }
            }
            Shape::Fs => {
                for (dev, fstype, mount) in FILESYSTEMS {
                    let mut p = base(name);
                    p.push(("device", dev.to_string()));
                    p.push(("fstype", fstype.to_string()));
                    p.push(("mountpoint", mount.to_string()));
                    out.push(Labels::from_pairs(p));
                }
            }
            Shape::Hwmon => {
                for (chip, sensor) in HWMON {
                    let mut p = base(name);
                    p.push(("chip", chip.to_string()));
                    p.push(("sensor", sensor.to_string()));
                    out.push(Labels::from_pairs(p));
                }
            }
        }
    }
}

/// Number of distinct metric names in the workload.
pub fn metric_name_count() -> usize {
    FAMILIES.len()
}

/// Exactly `n` node-exporter-like label sets: whole hosts in order, the last
/// one cut short.
pub fn node_series(n: usize) -> Vec<Labels> {
    let mut out = Vec::with_capacity(n + 256);
    let mut host = 0;
    while out.len() < n {
        host_series(host, &mut out);
        host += 1;
    }
    out.truncate(n);
    out
}

/// How many of the first `n` series carry the given metric name; used to
/// check that a server really holds what it acknowledged.
pub fn count_with_name(series: &[Labels], name: &str) -> usize {
    series
        .iter()
        .filter(|l| l.metric_name() == Some(name))
        .count()
}

/// The whole load: `rounds[r]` holds the bodies carrying sample `r` of every
/// series. Rounds must be sent in order (a series' samples must arrive in
/// time order); the bodies of one round may be sent concurrently.
pub struct Load {
    pub rounds: Vec<Vec<Bytes>>,
    pub series: usize,
    pub samples: usize,
    pub bytes: usize,
}

/// Builds and encodes the load: `samples_per_series` rounds spaced
/// `interval_ms` apart, the last at `end_ms`, `batch` samples per request.
pub fn build_load(
    series: &[Labels],
    samples_per_series: usize,
    interval_ms: i64,
    end_ms: i64,
    batch: usize,
) -> Load {
    let batch = batch.max(1);
    let mut rng = Rng::new(0x5eed);
    // Per-series running value; counters grow, gauges wander.
    let mut values: Vec<f64> = (0..series.len())
        .map(|_| (rng.below(1_000_000) as f64) / 100.0)
        .collect();
    let mut rounds = Vec::with_capacity(samples_per_series);
    let mut total_bytes = 0;
    for r in 0..samples_per_series {
        let t = end_ms - (samples_per_series - 1 - r) as i64 * interval_ms;
        let mut bodies = Vec::new();
        for (chunk_idx, chunk) in series.chunks(batch).enumerate() {
            let mut wb = WriteBatch::default();
            for (i, labels) in chunk.iter().enumerate() {
                let v = &mut values[chunk_idx * batch + i];
                *v += (rng.below(10_000) as f64) / 100.0;
                wb.push(labels.clone(), Sample::new(t, *v));
            }
            let bytes = skopos_ingest::remote_write::encode(&wb);
            total_bytes += bytes.len();
            bodies.push(Bytes::from(bytes));
        }
        rounds.push(bodies);
    }
    Load {
        rounds,
        series: series.len(),
        samples: series.len() * samples_per_series,
        bytes: total_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_unique_and_look_like_node_exporter() {
        let s = node_series(5000);
        assert_eq!(s.len(), 5000);
        let mut sorted = s.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5000);
        assert_eq!(s[0].get("job"), Some("node"));
        assert_eq!(s[0].get("instance"), Some("host-0:9100"));
        assert!((45..=55).contains(&metric_name_count()));
    }

    #[test]
    fn load_round_trips_through_the_decoder() {
        let s = node_series(300);
        let load = build_load(&s, 3, 15_000, 1_000_000, 128);
        assert_eq!(load.rounds.len(), 3);
        assert_eq!(load.samples, 900);
        let mut n = 0;
        for body in &load.rounds[2] {
            let d = skopos_ingest::remote_write::decode(body, 1 << 24).unwrap();
            n += d.batch.sample_count();
            assert!(d.batch.series.iter().all(|x| x.samples[0].t == 1_000_000));
        }
        assert_eq!(n, 300);
    }
}
