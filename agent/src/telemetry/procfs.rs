//! Pure parsers for the Linux `/proc` files the host metrics come from:
//! `/proc/stat`, `/proc/meminfo`, `/proc/net/dev` and `/proc/uptime`.
//!
//! Each takes the file's text and returns numbers or a short reason; none
//! reads a file, keeps state or logs. Units are converted here (kB → bytes,
//! fractional seconds → whole seconds) so the sampler only combines them.

/// Cumulative CPU time of the whole host, in jiffies, from the aggregate
/// `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CpuTimes {
    /// user + nice + system + idle + iowait + irq + softirq + steal
    /// (guest time is already inside user and nice, so it is not added).
    pub(crate) total: u64,
    /// idle + iowait: time the CPUs had nothing to run.
    pub(crate) idle: u64,
}

impl CpuTimes {
    /// Busy % between `earlier` and `self`: (Δtotal − Δidle) / Δtotal × 100,
    /// rounded to two decimals; 0 when no time passed (or the counters went
    /// backwards, as after a counter reset).
    pub(crate) fn busy_percent_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        let idle = self.idle.saturating_sub(earlier.idle);
        if total == 0 {
            return 0.0;
        }
        let busy = total.saturating_sub(idle) as f64 / total as f64 * 100.0;
        (busy.clamp(0.0, 100.0) * 100.0).round() / 100.0
    }
}

/// What `/proc/stat` tells: the aggregate CPU times and the number of
/// `cpuN` lines (the host's online logical CPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuStat {
    /// Aggregate times.
    pub(crate) times: CpuTimes,
    /// Count of `cpuN` lines.
    pub(crate) cores: u32,
}

/// Parses `/proc/stat`.
pub(crate) fn parse_stat(text: &str) -> Result<CpuStat, &'static str> {
    let mut times = None;
    let mut cores = 0u32;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(label) = fields.next() else { continue };
        if label == "cpu" {
            let values: Vec<u64> = fields.map_while(|f| f.parse().ok()).take(8).collect();
            if values.len() < 4 {
                return Err("the aggregate `cpu` line has fewer than 4 counters");
            }
            times = Some(CpuTimes {
                total: values.iter().sum(),
                idle: values[3] + values.get(4).copied().unwrap_or(0),
            });
        } else if label
            .strip_prefix("cpu")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            cores += 1;
        }
    }
    let times = times.ok_or("no aggregate `cpu` line")?;
    Ok(CpuStat { times, cores })
}

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Memory {
    /// `MemTotal`.
    pub(crate) total: u64,
    /// `MemAvailable`: what can be handed to programs without swapping
    /// (page cache counts as available). Kernels before 3.14 lack it; then
    /// `MemFree + Buffers + Cached` stands in.
    pub(crate) available: u64,
}

/// Parses `/proc/meminfo` (values in kB, returned in bytes).
pub(crate) fn parse_meminfo(text: &str) -> Result<Memory, &'static str> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            let (key, rest) = line.split_once(':')?;
            if key.trim() != name {
                return None;
            }
            let mut parts = rest.split_ascii_whitespace();
            let value: u64 = parts.next()?.parse().ok()?;
            let scale = match parts.next() {
                Some("kB") => 1024,
                None => 1,
                Some(_) => return None,
            };
            value.checked_mul(scale)
        })
    };
    let total = field("MemTotal").ok_or("no readable MemTotal line")?;
    let available = match field("MemAvailable") {
        Some(v) => v,
        None => {
            let free = field("MemFree").ok_or("neither MemAvailable nor MemFree")?;
            free + field("Buffers").unwrap_or(0) + field("Cached").unwrap_or(0)
        }
    };
    Ok(Memory {
        total,
        available: available.min(total),
    })
}

/// Received and sent bytes summed over every interface except `lo`, from
/// `/proc/net/dev` (the network namespace of the reader: the host's when
/// the agent runs on the host or with `--network host`).
pub(crate) fn parse_net_dev(text: &str) -> Result<(u64, u64), &'static str> {
    let mut interfaces = 0usize;
    let (mut rx, mut tx) = (0u64, 0u64);
    for line in text.lines() {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.contains('|') {
            continue;
        }
        let values: Vec<u64> = counters
            .split_ascii_whitespace()
            .map_while(|f| f.parse().ok())
            .collect();
        if values.len() < 9 {
            continue;
        }
        interfaces += 1;
        if name != "lo" {
            rx = rx.saturating_add(values[0]);
            tx = tx.saturating_add(values[8]);
        }
    }
    if interfaces == 0 {
        return Err("no interface lines");
    }
    Ok((rx, tx))
}

/// Whole seconds since boot, from `/proc/uptime` (`12345.67 54321.00`).
pub(crate) fn parse_uptime(text: &str) -> Result<u64, &'static str> {
    let first = text.split_ascii_whitespace().next().ok_or("empty")?;
    let secs: f64 = first.parse().map_err(|_| "first field is not a number")?;
    if !secs.is_finite() || secs < 0.0 {
        return Err("first field is not a non-negative number");
    }
    Ok(secs as u64)
}

/// Disk figures in bytes from statvfs fields, as `df` computes them:
/// `(total, used, free)` with used = blocks − bfree and free = bavail (what
/// an unprivileged writer can still use). Blocks reserved for root make
/// used + free a little less than total.
pub(crate) fn disk_figures(blocks: u64, bfree: u64, bavail: u64, frsize: u64) -> (u64, u64, u64) {
    let bytes = |n: u64| n.saturating_mul(frsize);
    (
        bytes(blocks),
        bytes(blocks.saturating_sub(bfree)),
        bytes(bavail),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
cpu1 1335202 30286 550190 11147286 4055 0 1720 0 31087 0
intr 199292234 64 0 0
ctxt 369474423
btime 1707000000
processes 1234567
";

    #[test]
    fn stat_gives_times_and_cores() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.cores, 2);
        let total = 10132153 + 290696 + 3084719 + 46828483 + 16683 + 25195;
        assert_eq!(s.times.total, total);
        assert_eq!(s.times.idle, 46828483 + 16683);
    }

    #[test]
    fn stat_without_cpu_line_is_an_error() {
        assert!(parse_stat("intr 1 2 3\n").is_err());
        assert!(parse_stat("cpu 1 2\n").is_err());
    }

    #[test]
    fn busy_percent_counts_iowait_as_idle() {
        let a = CpuTimes {
            total: 1000,
            idle: 800,
        };
        let b = CpuTimes {
            total: 1200,
            idle: 850,
        };
        assert_eq!(b.busy_percent_since(&a), 75.0);
        assert_eq!(a.busy_percent_since(&a), 0.0);
        // Counters that went backwards never give a negative or NaN figure.
        assert_eq!(a.busy_percent_since(&b), 0.0);
    }

    #[test]
    fn meminfo_in_bytes_with_available() {
        let m = parse_meminfo(
            "MemTotal:       16318588 kB\nMemFree:          502936 kB\nMemAvailable:    9384264 kB\nBuffers:          123 kB\n",
        )
        .unwrap();
        assert_eq!(m.total, 16318588 * 1024);
        assert_eq!(m.available, 9384264 * 1024);
    }

    #[test]
    fn meminfo_without_available_falls_back_to_free_buffers_cached() {
        let m = parse_meminfo(
            "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\nSwapCached: 7 kB\n",
        )
        .unwrap();
        assert_eq!(m.available, 350 * 1024);
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
        assert!(parse_meminfo("MemTotal: x kB\n").is_err());
    }

    #[test]
    fn net_dev_sums_all_but_lo() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 9999999   100    0    0    0     0          0         0  9999999     100    0    0    0     0       0          0
  eth0: 1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
docker0:  300       3    0    0    0     0          0         0      400       4    0    0    0     0       0          0
";
        assert_eq!(parse_net_dev(text).unwrap(), (1300, 2400));
    }

    #[test]
    fn net_dev_with_only_lo_is_zero_and_garbage_is_an_error() {
        let only_lo = "h|\nh|\n lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(only_lo).unwrap(), (0, 0));
        assert!(parse_net_dev("nothing here\n").is_err());
    }

    #[test]
    fn uptime_whole_seconds() {
        assert_eq!(parse_uptime("2073.91 3967.10\n").unwrap(), 2073);
        assert!(parse_uptime("").is_err());
        assert!(parse_uptime("abc 1").is_err());
        assert!(parse_uptime("-5 1").is_err());
    }

    #[test]
    fn disk_like_df() {
        // 100 blocks of 4 KiB, 30 free of which 25 for unprivileged users.
        assert_eq!(
            disk_figures(100, 30, 25, 4096),
            (409_600, 70 * 4096, 25 * 4096)
        );
    }
}
