//! Memory of the per-address limiter under a flood of distinct addresses.
//!
//! Feeds 10^6 distinct IPv4 addresses through a limiter with the production default quota
//! (`20/s burst 40`), reports resident memory at the peak, then prunes as the service does
//! every 10 s (`retain_recent` + `shrink_to_fit`) once the keys have replenished, and reports
//! the settled figure. Run with `cargo run --release --example limiter_memory`.

use std::time::{Duration, Instant};

use sessiond::limits::{KeyedLimiter, QuotaSpec};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

fn main() {
    let keys: u32 = std::env::var("KEYS").ok().and_then(|k| k.parse().ok()).unwrap_or(1_000_000);
    let quota: QuotaSpec = "20/s burst 40".parse().expect("quota");
    let limiter = KeyedLimiter::new("ip", quota);
    let baseline = rss_kib();
    let started = Instant::now();
    for n in 0..keys {
        let key = u128::from(0x0a00_0000_u32.wrapping_add(n));
        let _ = limiter.check(key);
    }
    let fill = started.elapsed();
    let peak = rss_kib();
    println!("keys tracked: {}  (inserted in {fill:.2?})", limiter.len());
    println!("baseline RSS: {:.1} MiB", baseline as f64 / 1024.0);
    println!(
        "peak RSS:     {:.1} MiB  ({:.0} bytes per key)",
        peak as f64 / 1024.0,
        (peak - baseline) as f64 * 1024.0 / f64::from(keys)
    );
    // A burst of 40 at 20/s is whole again after 2 s; wait for that, then prune.
    std::thread::sleep(Duration::from_millis(2_100));
    let started = Instant::now();
    limiter.prune();
    let pruned_in = started.elapsed();
    let settled = rss_kib();
    println!(
        "after prune:  {:.1} MiB  ({} keys left, prune took {pruned_in:.2?})",
        settled as f64 / 1024.0,
        limiter.len()
    );
}
