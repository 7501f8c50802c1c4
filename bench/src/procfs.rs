//! CPU time, memory and the open-file limit of a process, from `/proc` (Linux).

use anyhow::Context as _;

/// CPU time a process has used so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    /// Sum of `/proc/PID/task/*/schedstat` run time, in nanoseconds (threads alive now).
    pub sched_ns: u64,
    /// `utime + stime` from `/proc/PID/stat`, in clock ticks (every thread, also exited ones).
    pub ticks: u64,
    /// `stime` alone: time in the kernel (system calls, network stack, scheduling), in ticks.
    pub sys_ticks: u64,
}

impl CpuSample {
    /// Reads both counters of `pid`.
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let stat =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("read /proc/{pid}/stat"))?;
        // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc/PID/stat")?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |n: usize| -> anyhow::Result<u64> {
            fields.get(n - 3).context("short /proc/PID/stat")?.parse::<u64>().context("bad /proc/PID/stat field")
        };
        let sys_ticks = field(15)?;
        let ticks = field(14)? + sys_ticks;
        let mut sched_ns = 0;
        for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path().join("schedstat");
            if let Ok(s) = std::fs::read_to_string(path) {
                sched_ns += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
        Ok(Self { sched_ns, ticks, sys_ticks })
    }
}

/// CPU used between two samples.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuDelta {
    /// From schedstat, nanoseconds.
    pub sched_ns: u64,
    /// From utime+stime, nanoseconds (tick resolution).
    pub ticks_ns: u64,
    /// From stime alone, nanoseconds (tick resolution).
    pub sys_ns: u64,
}

impl CpuDelta {
    /// `after - before`, ticks converted with `clk_tck`.
    pub fn between(before: CpuSample, after: CpuSample, clk_tck: u64) -> Self {
        Self {
            sched_ns: after.sched_ns.saturating_sub(before.sched_ns),
            ticks_ns: after.ticks.saturating_sub(before.ticks) * (1_000_000_000 / clk_tck.max(1)),
            sys_ns: after.sys_ticks.saturating_sub(before.sys_ticks) * (1_000_000_000 / clk_tck.max(1)),
        }
    }
}

/// `getconf CLK_TCK` (100 when it cannot be asked).
pub fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Run time (schedstat, ns) of each live thread of `pid`, with the thread's name.
pub fn threads(pid: u32) -> Vec<(String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| {
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let ns = std::fs::read_to_string(entry.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((comm.trim().to_owned(), ns))
        })
        .collect()
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("read /proc/{pid}/status"))?;
    let get = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((get("VmRSS:"), get("VmHWM:")))
}

/// The soft and hard limits on open files (`RLIMIT_NOFILE`) of `pid`; `u64::MAX`: unlimited.
pub fn nofile_limit(pid: u32) -> anyhow::Result<(u64, u64)> {
    let limits =
        std::fs::read_to_string(format!("/proc/{pid}/limits")).with_context(|| format!("read /proc/{pid}/limits"))?;
    let line = limits.lines().find_map(|l| l.strip_prefix("Max open files")).context("no open-file limit")?;
    let value = |v: Option<&str>| -> anyhow::Result<u64> {
        match v.context("short open-file limit line")? {
            "unlimited" => Ok(u64::MAX),
            n => n.parse().with_context(|| format!("open-file limit {n:?}")),
        }
    };
    let mut fields = line.split_whitespace();
    Ok((value(fields.next())?, value(fields.next())?))
}

/// Whole-machine CPU counters from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemCpu {
    /// Time not idle (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// Time the hypervisor ran something else while this VM wanted the CPU.
    pub steal: u64,
}

impl SystemCpu {
    /// Reads `/proc/stat`.
    pub fn read() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
        let line = stat.lines().next().context("empty /proc/stat")?;
        let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        Ok(Self { busy: at(0) + at(1) + at(2) + at(5) + at(6) + at(7), steal: at(7) })
    }
}

/// The 1-minute load average (for the report: other work on the machine skews results).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let cpu = CpuSample::read(me).unwrap();
        assert!(cpu.sched_ns > 0 || cpu.ticks > 0);
        let (rss, hwm) = rss_kib(me).unwrap();
        assert!(rss > 0 && hwm >= rss);
        let (soft, hard) = nofile_limit(me).unwrap();
        assert!(soft > 0 && hard >= soft);
    }
}
