-- Amplitude's session length distribution (/api/2/sessions/length) in its default bins, per
-- project and session date (the project's time zone): [0, 3 s), [3 s, 10 s), [10 s, 30 s),
-- [30 s, 1 min), [1, 3 min), [3, 10 min), [10, 30 min), [30 min, 1 h), [1 h, 24 h). Lengths
-- are Amplitude's (sessions.length_ms); a session of no active event, or of a day or more
-- (Amplitude caps sessions at one day), is in no bin. Every bin of every date of a project
-- has a row, zeros included.
with bins(bin, label, lower_ms, upper_ms) as (
    values
        (1, '0s-3s', 0, 3000),
        (2, '3s-10s', 3000, 10000),
        (3, '10s-30s', 10000, 30000),
        (4, '30s-1m', 30000, 60000),
        (5, '1m-3m', 60000, 180000),
        (6, '3m-10m', 180000, 600000),
        (7, '10m-30m', 600000, 1800000),
        (8, '30m-1h', 1800000, 3600000),
        (9, '1h-24h', 3600000, 86400000)
),

sessions as materialized (
    select project, session_date, length_ms from {{ ref('sessions') }}
),

binned as (
    select sessions.project, sessions.session_date, bins.bin, count(*) as sessions
    from sessions
    join bins on sessions.length_ms >= bins.lower_ms and sessions.length_ms < bins.upper_ms
    group by sessions.project, sessions.session_date, bins.bin
)

select
    dates.project,
    dates.session_date,
    bins.bin,
    bins.label,
    bins.lower_ms,
    bins.upper_ms,
    coalesce(binned.sessions, 0) as sessions
from (select distinct project, session_date from sessions) as dates
cross join bins
left join binned
    on binned.project = dates.project
    and binned.session_date = dates.session_date
    and binned.bin = bins.bin
