//! The Lua scripts, each atomic on one hash slot (all its keys share a
//! hash tag). Times are microseconds since the epoch from Redis `TIME`, so
//! replicas' clocks never matter. Numbers are written with `%.0f`: Lua
//! would otherwise print large integers in exponent form.

use redis::Script;

/// Compare-and-delete: releases the lease only if `owner` holds it, and
/// announces the release on the import's channel.
///
/// KEYS[1] lease; ARGV[1] owner, ARGV[2] channel. Returns 1 if released.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
";

/// Compare-and-pexpire: extends the lease only if `owner` holds it.
///
/// KEYS[1] lease; ARGV[1] owner, ARGV[2] ttl in ms. Returns 1 if extended.
const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// GCRA charge with reservation.
///
/// Emission interval `T`, tolerance `tau = (burst - 1) * T` (NOT the
/// period: with `tau = 60 s` a limit of 60/min would let 61 through at
/// once). A charge arrives at `max(now, pause)`. With the stored
/// theoretical arrival time `tat` (at least the arrival), it conforms from
/// `slot = max(arrival, tat - tau)`. If `slot - now <= max_wait` it is
/// charged for that slot (`tat += T`, which reserves it) and the wait is
/// returned; otherwise nothing changes and the wait is returned as the
/// time to come back. From idle exactly `burst` charges pass at once.
///
/// KEYS[1] the tenant's tat, KEYS[2] its pause (both µs since the epoch);
/// ARGV[1] T µs, ARGV[2] tau µs, ARGV[3] max wait µs.
/// Returns {1, wait µs} when charged, {0, retry-after µs} when refused.
const CHARGE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local arrival = now
local paused = redis.call('GET', KEYS[2])
if paused then arrival = math.max(arrival, tonumber(paused)) end
local tat = arrival
local stored = redis.call('GET', KEYS[1])
if stored then tat = math.max(tat, tonumber(stored)) end
local slot = math.max(arrival, tat - tau)
local wait = slot - now
if wait > max_wait then
  return {0, wait}
end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return {1, wait}
";

/// Pauses a tenant's budget until `now + duration`, unless a longer pause
/// is in place.
///
/// KEYS[1] the tenant's pause; ARGV[1] duration µs (> 0). Returns 1 if set.
const PAUSE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local duration = tonumber(ARGV[1])
local pause_until = now + duration
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= pause_until then
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', pause_until), 'PX', string.format('%.0f', math.ceil(duration / 1000)))
return 1
";

/// The scripts, hashed once (invoked by EVALSHA, loaded on NOSCRIPT).
pub(super) struct Scripts {
    pub(super) release: Script,
    pub(super) extend: Script,
    pub(super) charge: Script,
    pub(super) pause: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            release: Script::new(RELEASE),
            extend: Script::new(EXTEND),
            charge: Script::new(CHARGE),
            pause: Script::new(PAUSE),
        }
    }
}
