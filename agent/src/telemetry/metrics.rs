//! Host metrics: the [`HostSampler`] that reads `/proc` and statvfs, and the
//! loop that sends one `metrics` frame per interval.
//!
//! It owns the CPU baseline between samples and the choice of which disk to
//! measure (Docker's data root, else `/`). A field that cannot be read is
//! reported as 0 and logged once (until it works again); it never stops the
//! other fields or the loop. It never blocks the async runtime on a file
//! system (samples run on the blocking pool) and never queues more than one
//! sample behind a congested link.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mooring_docker::DockerClient;
use mooring_protocol::{Frame, HostMetrics, MetricsFrame};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::procfs::{self, CpuTimes};
use super::{TelemetryError, TelemetryStatus};

/// Longest wait before the first sample: its CPU figure is measured over
/// this delta (or the interval, if shorter).
const FIRST_SAMPLE_DELAY: Duration = Duration::from_secs(1);

/// Longest wait for `GET /info` when looking up Docker's data root.
const DOCKER_INFO_TIMEOUT: Duration = Duration::from_secs(5);

/// The readings of one sample, named for the "log once" bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Cpu,
    Memory,
    Disk,
    Network,
    Uptime,
}

impl Field {
    const ALL: [Field; 5] = [
        Field::Cpu,
        Field::Memory,
        Field::Disk,
        Field::Network,
        Field::Uptime,
    ];

    fn index(self) -> usize {
        Field::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// Samples host CPU, memory, disk, network and uptime.
///
/// Memory: `memory_used` = `MemTotal − MemAvailable` and `memory_free` =
/// `MemAvailable` (page cache that the kernel can reclaim counts as free,
/// as `free -h`'s "available" column shows it), so used + free = total.
///
/// Disk: statvfs of [`HostSampler::disk_path`], as `df` computes it (free =
/// space an unprivileged writer can use). Network: bytes since boot over
/// every interface except `lo`. CPU: busy % since the previous sample.
#[derive(Debug)]
pub struct HostSampler {
    proc_root: PathBuf,
    disk_path: PathBuf,
    last_cpu: Option<CpuTimes>,
    failing: [bool; 5],
}

impl HostSampler {
    /// A sampler over `proc_root` (normally `/proc`; a host's `/proc`
    /// mounted elsewhere when the agent runs in a container) measuring the
    /// disk at `/` until [`HostSampler::set_disk_path`].
    ///
    /// Fails when `stat` or `meminfo` cannot be read or parsed there: then
    /// this host cannot offer the `metrics` capability. Takes the CPU
    /// baseline for the first sample.
    pub fn new(proc_root: impl Into<PathBuf>) -> Result<Self, TelemetryError> {
        let proc_root = proc_root.into();
        let stat = read_parse(&proc_root, "stat", procfs::parse_stat)?;
        read_parse(&proc_root, "meminfo", procfs::parse_meminfo)?;
        Ok(HostSampler {
            proc_root,
            disk_path: PathBuf::from("/"),
            last_cpu: Some(stat.times),
            failing: [false; 5],
        })
    }

    /// Measures the disk holding `path` from now on.
    pub fn set_disk_path(&mut self, path: impl Into<PathBuf>) {
        self.disk_path = path.into();
    }

    /// The path whose file system the disk figures describe.
    pub fn disk_path(&self) -> &Path {
        &self.disk_path
    }

    /// Takes one sample. Blocking (file reads and statvfs): call it from a
    /// blocking context. Unreadable fields are 0 and logged once.
    pub fn sample(&mut self) -> HostMetrics {
        let mut m = HostMetrics::default();
        let stat = read_parse(&self.proc_root, "stat", procfs::parse_stat);
        let cores_fallback = || {
            std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(1)
        };
        match self.check(Field::Cpu, stat) {
            Some(stat) => {
                if let Some(prev) = self.last_cpu {
                    m.cpu_usage = stat.times.busy_percent_since(&prev);
                }
                self.last_cpu = Some(stat.times);
                m.cpu_cores = if stat.cores > 0 {
                    stat.cores
                } else {
                    cores_fallback()
                };
            }
            None => m.cpu_cores = cores_fallback(),
        }
        let mem = read_parse(&self.proc_root, "meminfo", procfs::parse_meminfo);
        if let Some(mem) = self.check(Field::Memory, mem) {
            m.memory_total = mem.total;
            m.memory_free = mem.available;
            m.memory_used = mem.total - mem.available;
        }
        if let Some((total, used, free)) = self.check(Field::Disk, disk(&self.disk_path)) {
            (m.disk_total, m.disk_used, m.disk_free) = (total, used, free);
        }
        let net = read_parse(&self.proc_root, "net/dev", procfs::parse_net_dev);
        if let Some((rx, tx)) = self.check(Field::Network, net) {
            (m.network_rx_bytes, m.network_tx_bytes) = (rx, tx);
        }
        let uptime = read_parse(&self.proc_root, "uptime", procfs::parse_uptime);
        if let Some(up) = self.check(Field::Uptime, uptime) {
            m.uptime = up;
        }
        m
    }

    /// The value, or `None` with a warning the first time a field fails
    /// (and a note when it works again).
    fn check<T>(&mut self, field: Field, result: Result<T, TelemetryError>) -> Option<T> {
        let failing = &mut self.failing[field.index()];
        match result {
            Ok(v) => {
                if std::mem::take(failing) {
                    info!(?field, "host metric readable again");
                }
                Some(v)
            }
            Err(err) => {
                if !std::mem::replace(failing, true) {
                    warn!(?field, %err, "host metric unreadable: reporting 0 until it works");
                }
                None
            }
        }
    }
}

/// Reads `proc_root/name` and parses it.
fn read_parse<T>(
    proc_root: &Path,
    name: &str,
    parse: fn(&str) -> Result<T, &'static str>,
) -> Result<T, TelemetryError> {
    let path = proc_root.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| TelemetryError::Proc {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    parse(&text).map_err(|reason| TelemetryError::Proc {
        path,
        reason: reason.to_owned(),
    })
}

/// `(total, used, free)` bytes of the file system holding `path`.
fn disk(path: &Path) -> Result<(u64, u64, u64), TelemetryError> {
    let st = rustix::fs::statvfs(path).map_err(|e| TelemetryError::Proc {
        path: path.to_owned(),
        reason: format!("statvfs: {e}"),
    })?;
    let frsize = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    Ok(procfs::disk_figures(
        st.f_blocks,
        st.f_bfree,
        st.f_bavail,
        frsize,
    ))
}

/// The path to measure for disk metrics: Docker's `DockerRootDir` (from
/// `GET /info`) when this process can see it, else `/` (an agent in a
/// container without the data root mounted). `Err` when Docker cannot be
/// asked; the caller retries later.
pub async fn docker_disk_path(docker: &DockerClient) -> Result<PathBuf, TelemetryError> {
    let info = docker.get_json("/info").await?;
    let Some(root) = info.get("DockerRootDir").and_then(|v| v.as_str()) else {
        return Ok(PathBuf::from("/"));
    };
    let root = PathBuf::from(root);
    if tokio::fs::metadata(&root).await.is_ok() {
        Ok(root)
    } else {
        info!(root = %root.display(), "Docker's data root is not visible here: disk metrics describe /");
        Ok(PathBuf::from("/"))
    }
}

/// Sends one `metrics` frame every `interval` until `shutdown` or until
/// `out` closes. A frame the link cannot take at once is skipped (counted in
/// [`TelemetryStatus::metrics_skipped`]): the next sample supersedes it.
pub(crate) async fn run(
    sampler: HostSampler,
    docker: DockerClient,
    out: mpsc::Sender<Frame>,
    interval: Duration,
    status: watch::Sender<TelemetryStatus>,
    shutdown: CancellationToken,
) {
    let sampler = Arc::new(Mutex::new(sampler));
    let mut disk_known = false;
    let mut delay = interval.min(FIRST_SAMPLE_DELAY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = interval;
        if !disk_known {
            let asked = tokio::select! {
                _ = shutdown.cancelled() => return,
                asked = tokio::time::timeout(DOCKER_INFO_TIMEOUT, docker_disk_path(&docker)) => asked,
            };
            match asked {
                Ok(Ok(path)) => {
                    lock(&sampler).set_disk_path(path);
                    disk_known = true;
                }
                Ok(Err(err)) => {
                    debug!(%err, "Docker's data root unknown yet: disk metrics describe /")
                }
                Err(_) => {
                    debug!("Docker did not answer GET /info in time: disk metrics describe /")
                }
            }
        }
        let job = Arc::clone(&sampler);
        // A hung file system must not hold up shutdown: the blocking thread
        // is left to finish on its own.
        let sampled = tokio::select! {
            _ = shutdown.cancelled() => return,
            sampled = tokio::task::spawn_blocking(move || lock(&job).sample()) => sampled,
        };
        let metrics = match sampled {
            Ok(m) => m,
            Err(err) => {
                warn!(%err, "host metrics sample failed; trying again next interval");
                continue;
            }
        };
        let frame = Frame::Metrics(MetricsFrame {
            timestamp: unix_seconds(),
            metrics,
        });
        match out.try_send(frame) {
            Ok(()) => status.send_modify(|s| s.metrics_sent += 1),
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!("link congested: metrics sample skipped");
                status.send_modify(|s| s.metrics_skipped += 1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// The sampler, even if a previous sample panicked while holding it.
fn lock(sampler: &Mutex<HostSampler>) -> std::sync::MutexGuard<'_, HostSampler> {
    sampler.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Now, in unix seconds.
fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_proc_files_fail_construction_with_the_path() {
        let err = HostSampler::new("/nonexistent-proc").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-proc/stat"), "{err}");
    }

    #[test]
    fn one_unreadable_field_leaves_the_others() {
        let dir = std::env::temp_dir().join(format!("mooring-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stat"),
            "cpu 1 0 1 8 0 0 0 0\ncpu0 1 0 1 8 0 0 0 0\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("meminfo"),
            "MemTotal: 100 kB\nMemAvailable: 40 kB\n",
        )
        .unwrap();
        std::fs::write(dir.join("uptime"), "42.5 10.0\n").unwrap();
        // No net/dev: network must be 0 while the rest is reported.
        let mut s = HostSampler::new(&dir).unwrap();
        std::fs::write(
            dir.join("stat"),
            "cpu 4 0 2 14 0 0 0 0\ncpu0 4 0 2 14 0 0 0 0\n",
        )
        .unwrap();
        let m = s.sample();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(m.cpu_cores, 1);
        assert_eq!(m.cpu_usage, 40.0); // Δtotal 10, Δidle 6
        assert_eq!(m.memory_total, 100 * 1024);
        assert_eq!(m.memory_used, 60 * 1024);
        assert_eq!(m.memory_free, 40 * 1024);
        assert_eq!((m.network_rx_bytes, m.network_tx_bytes), (0, 0));
        assert_eq!(m.uptime, 42);
        assert!(m.disk_total > 0, "disk of / should be readable");
        assert!(s.failing[Field::Network.index()]);
    }
}
