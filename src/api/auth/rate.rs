//! Requests per second per token: a token bucket per workspace token id,
//! in memory, checked by the authentication layer right after the token
//! is recognised. A request costs one map lookup and a little arithmetic.
//!
//! Admin tokens are not limited: they belong to the operator (the
//! bootstrap token, the load generator, the CLI used to revoke a runaway
//! token), and a limit there could lock the operator out during the very
//! flood it is meant to stop. Tenants' tokens are what one workspace could
//! use to crowd out the others.
//!
//! Only tokens that authenticated get a bucket, so a client sending made-up
//! tokens cannot grow the map; buckets that have been idle long enough to be
//! full again are dropped (a full bucket and no bucket answer alike), so
//! revoked and unused tokens do not stay in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::config::QuotasConfig;
use crate::error::Error;
use crate::model::{Caller, Role, TokenId};

/// How often idle buckets are looked for, at least: a sweep walks the whole
/// map, so it is not done more often than this whatever the bucket size.
const MIN_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct RateLimits {
    inner: Arc<Inner>,
}

struct Inner {
    per_second: u32,
    burst: u32,
    buckets: DashMap<TokenId, Bucket>,
    /// A bucket untouched this long has refilled completely.
    refill: Duration,
    sweep_interval: Duration,
    /// The time origin of `next_sweep_ms`: an atomic holds no `Instant`.
    origin: Instant,
    next_sweep_ms: AtomicU64,
}

struct Bucket {
    /// Requests the token may make now (fractions accrue between calls).
    available: f64,
    at: Instant,
}

impl RateLimits {
    pub fn new(quotas: &QuotasConfig) -> Self {
        Self::starting_at(quotas, Instant::now())
    }

    /// Limits whose clock starts at `origin` (tests pass their own instants
    /// to [`Self::admit_at`]).
    pub fn starting_at(quotas: &QuotasConfig, origin: Instant) -> Self {
        // Config validation refuses zero; max(1) keeps a hand-built config
        // from dividing by zero.
        let per_second = quotas.requests_per_second_per_token.max(1);
        let burst = quotas.burst_per_token.max(1);
        let refill = Duration::from_secs_f64(f64::from(burst) / f64::from(per_second));
        let sweep_interval = refill.max(MIN_SWEEP_INTERVAL);
        Self {
            inner: Arc::new(Inner {
                per_second,
                burst,
                buckets: DashMap::new(),
                refill,
                sweep_interval,
                origin,
                next_sweep_ms: AtomicU64::new(millis(sweep_interval)),
            }),
        }
    }

    /// Takes one request from the caller's bucket, or refuses it with
    /// `RESOURCE_EXHAUSTED` saying when the next one will be accepted.
    pub fn admit(&self, caller: &Caller) -> Result<(), Error> {
        self.admit_at(caller, Instant::now())
    }

    pub fn admit_at(&self, caller: &Caller, now: Instant) -> Result<(), Error> {
        if caller.role == Role::Admin {
            return Ok(());
        }
        self.sweep(now);
        let inner = &*self.inner;
        let (per_second, burst) = (f64::from(inner.per_second), f64::from(inner.burst));
        // The common case finds the bucket without cloning the id.
        let taken = match inner.buckets.get_mut(&caller.token_id) {
            Some(mut bucket) => bucket.take(now, per_second, burst),
            None => inner
                .buckets
                .entry(caller.token_id.clone())
                .or_insert(Bucket {
                    available: burst,
                    at: now,
                })
                .take(now, per_second, burst),
        };
        taken.map_err(|wait| {
            Error::ResourceExhausted(format!(
                "rate limit of {} requests per second for token {} exceeded; retry after {} ms",
                inner.per_second,
                caller.token_id,
                wait.as_millis().max(1)
            ))
        })
    }

    /// Buckets held now (tests check that idle ones go).
    pub fn buckets(&self) -> usize {
        self.inner.buckets.len()
    }

    /// Drops the buckets idle for longer than a full refill, at most once
    /// per `sweep_interval`; the request that finds the sweep due does it.
    fn sweep(&self, now: Instant) {
        let inner = &*self.inner;
        let now_ms = millis(now.saturating_duration_since(inner.origin));
        let due = inner.next_sweep_ms.load(Ordering::Relaxed);
        if now_ms < due {
            return;
        }
        let next = now_ms.saturating_add(millis(inner.sweep_interval));
        // One request sweeps; the others that saw it due go on.
        if inner
            .next_sweep_ms
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        inner
            .buckets
            .retain(|_, bucket| now.saturating_duration_since(bucket.at) < inner.refill);
    }
}

impl Bucket {
    /// `Err`: how long until one request's worth has accrued.
    fn take(&mut self, now: Instant, per_second: f64, burst: f64) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.available = (self.available + elapsed * per_second).min(burst);
        // Callers read the clock before taking the lock: a late one must
        // not move the bucket's time back and be credited twice.
        self.at = self.at.max(now);
        if self.available >= 1.0 {
            self.available -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.available) / per_second))
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
