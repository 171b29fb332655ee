-- Amplitude's average session length (/api/2/sessions/average) per project and session date
-- (the project's time zone), in seconds, over the sessions that have a length under a day
-- (those the distribution bins).
select
    project,
    session_date,
    count(*) as sessions,
    avg(length_ms) / 1000 as average_seconds
from {{ ref('sessions') }}
where length_ms >= 0 and length_ms < 86400000
group by project, session_date
