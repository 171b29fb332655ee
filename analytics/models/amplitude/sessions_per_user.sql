-- Amplitude's average sessions per user (/api/2/sessions/peruser) per project and session date
-- (the project's time zone): the day's sessions over the users who had one that day.
select
    project,
    session_date,
    count(*) as sessions,
    count(distinct amplitude_id) as users,
    count(*) / count(distinct amplitude_id) as sessions_per_user
from {{ ref('sessions') }}
group by project, session_date
