//! Raw argon2id verification rate, for comparison with sessiond's login throughput.
//!
//! Hashes one password with the given parameters (sessiond's defaults: m=19456 KiB, t=2,
//! p=1), then verifies it from `ARGON2_THREADS` threads (default 2) for `ARGON2_SECONDS`
//! (default 5) and prints the verifications per second as one JSON line. Verification goes
//! through the same call as sessiond's login (`verify_password` on the PHC string, which
//! parses it every time), so the figure is the ceiling a login can reach on this machine
//! with that many hashing threads.
//!
//! ```sh
//! cargo build --release --example argon2_rate
//! ARGON2_THREADS=2 ARGON2_SECONDS=5 ./target/release/examples/argon2_rate
//! ```
//!
//! Other knobs: `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let memory_kib = env_u32("ARGON2_MEMORY_KIB", 19_456);
    let iterations = env_u32("ARGON2_ITERATIONS", 2);
    let parallelism = env_u32("ARGON2_PARALLELISM", 1);
    let threads = env_u32("ARGON2_THREADS", 2).max(1);
    let seconds = std::env::var("ARGON2_SECONDS").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(5.0);

    let params = Params::new(memory_kib, iterations, parallelism, None).map_err(|e| format!("argon2 params: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let password = b"benchmark password, long enough";
    let phc = argon.hash_password(password).map_err(|e| format!("argon2 hash: {e}"))?.to_string();
    // One verification outside the clock: page in the code and the allocator.
    argon.verify_password(password, phc.as_str()).map_err(|e| format!("argon2 verify: {e}"))?;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (argon, phc, stop, done) = (argon.clone(), phc.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ok = argon.verify_password(password, phc.as_str()).is_ok();
                    assert!(ok, "verification of the correct password failed");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().map_err(|_| "a verification thread panicked")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = done.load(Ordering::Relaxed);
    let rate = count as f64 / elapsed;
    println!(
        "{{\"memory_kib\":{memory_kib},\"iterations\":{iterations},\"parallelism\":{parallelism},\"threads\":{threads},\
         \"verifications\":{count},\"seconds\":{elapsed:.3},\"per_second\":{rate:.2},\"ms_per_verify_per_thread\":{:.2}}}",
        1000.0 * elapsed * f64::from(threads) / count.max(1) as f64
    );
    Ok(())
}
