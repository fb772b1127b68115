//! The Lua scripts, each atomic on one hash slot (all its keys share a
//! hash tag). The budget's times are microseconds since the epoch from
//! Redis `TIME`, so replicas' clocks never matter. Numbers are written with
//! `%.0f`: Lua would otherwise print large integers in exponent form.
//! Values the import scripts store or return (records, in-doubt marks) are
//! sealed and opened by the caller: a script never sees them in clear.

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

/// Begins an import: the record if stored (and asked for); else takes the
/// lease if free, then returns the in-doubt mark found, or stores the new
/// mark (sealed by the caller for its key) when there was none; else says
/// the lease is held. Replaces GET record, SET NX lease, GET record again,
/// GET mark and SET mark.
///
/// KEYS[1] record, KEYS[2] lease, KEYS[3] in-doubt mark; ARGV[1] owner,
/// ARGV[2] lease ttl ms, ARGV[3] the new mark (sealed), ARGV[4] mark ttl
/// ms, ARGV[5] "1" to look at the record. Returns {0, record} when stored,
/// {1, false} when the lease is held by another, {2, previous mark or
/// false} when the lease was taken.
const BEGIN: &str = r"
if ARGV[5] == '1' then
  local record = redis.call('GET', KEYS[1])
  if record then return {0, record} end
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, false}
end
local previous = redis.call('GET', KEYS[3])
if previous then return {2, previous} end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return {2, false}
";

/// Finishes an import: stores the record, clears the in-doubt mark,
/// announces the record on the import's channel, and releases the lease
/// if `owner` still holds it. Replaces the MULTI/EXEC of the record and
/// the release script.
///
/// KEYS[1] record, KEYS[2] in-doubt mark, KEYS[3] lease; ARGV[1] the
/// record (sealed), ARGV[2] its ttl ms, ARGV[3] channel, ARGV[4] owner.
/// Returns 1 if the lease was released.
const FINISH: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[3], 'record')
if redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])
  return 1
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
    pub(super) begin: Script,
    pub(super) finish: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            release: Script::new(RELEASE),
            extend: Script::new(EXTEND),
            charge: Script::new(CHARGE),
            pause: Script::new(PAUSE),
            begin: Script::new(BEGIN),
            finish: Script::new(FINISH),
        }
    }
}
