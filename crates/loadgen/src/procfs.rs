//! What a process costs, read from `/proc`: CPU time of all its threads and its memory split
//! into private and shared.

use anyhow::{Context, Result};
use serde::Serialize;

/// CPU time of every thread of `pid`, in nanoseconds (`schedstat`, finer than `stat`'s ticks).
pub fn cpu_ns(pid: u32) -> Result<u64> {
    let tasks = format!("/proc/{pid}/task");
    let mut total = 0;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between listing and reading.
        if let Ok(text) = std::fs::read_to_string(&path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|field| field.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// CPU time of the calling process, in nanoseconds.
pub fn own_cpu_ns() -> u64 {
    cpu_ns(std::process::id()).unwrap_or(0)
}

/// Memory of a process in KiB, from `smaps_rollup`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// Pages only this process maps: its heap, stacks and private data.
    pub private_kib: u64,
    /// Pages mapped by other processes too (libraries, shared memory segments).
    pub shared_kib: u64,
    pub rss_kib: u64,
}

pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut memory = Memory::default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(kib) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "Rss:" => memory.rss_kib = kib,
            "Private_Clean:" | "Private_Dirty:" | "Private_Hugetlb:" => memory.private_kib += kib,
            "Shared_Clean:" | "Shared_Dirty:" | "Shared_Hugetlb:" => memory.shared_kib += kib,
            _ => {}
        }
    }
    Ok(memory)
}
