//! What this machine can offer to jobs: CPUs, memory and NVIDIA GPUs.

use std::process::Command;

use distributeai_protocol::GpuInfo;

/// The host's resources as detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostResources {
    /// Logical CPUs available to this process.
    pub cpus: u32,
    /// Total memory in MiB (0 if unknown).
    pub memory_mb: u64,
    /// NVIDIA GPUs.
    pub gpus: Vec<GpuInfo>,
}

/// Detects the host's CPUs, memory and GPUs.
pub fn detect() -> HostResources {
    let cpus = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_meminfo_total_mb(&text))
        .unwrap_or(0);
    HostResources {
        cpus,
        memory_mb,
        gpus: detect_nvidia_gpus(),
    }
}

fn parse_meminfo_total_mb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// NVIDIA GPUs, from `nvidia-smi` when it is installed, else from the device files alone.
fn detect_nvidia_gpus() -> Vec<GpuInfo> {
    let query = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output();
    if let Ok(out) = query
        && out.status.success()
    {
        return parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout));
    }
    let devices = std::fs::read_dir("/dev")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.strip_prefix("nvidia")
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0);
    (0..devices)
        .map(|_| GpuInfo {
            vendor: "nvidia".into(),
            model: "unknown".into(),
            memory_mb: 0,
        })
        .collect()
}

fn parse_nvidia_smi(csv: &str) -> Vec<GpuInfo> {
    csv.lines()
        .filter_map(|line| {
            let (name, memory) = line.rsplit_once(',')?;
            Some(GpuInfo {
                vendor: "nvidia".into(),
                model: name.trim().to_string(),
                memory_mb: memory.trim().parse().unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo_and_nvidia_smi() {
        assert_eq!(
            parse_meminfo_total_mb("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24000)
        );
        assert_eq!(parse_meminfo_total_mb("garbage"), None);
        let gpus = parse_nvidia_smi("NVIDIA GeForce RTX 4090, 24564\nTesla T4, 15360\n");
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].model, "NVIDIA GeForce RTX 4090");
        assert_eq!(gpus[1].memory_mb, 15360);
    }

    #[test]
    fn detects_this_machine() {
        let host = detect();
        assert!(host.cpus >= 1);
        assert!(host.memory_mb > 0);
    }
}
