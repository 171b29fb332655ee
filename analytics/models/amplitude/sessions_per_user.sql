-- Amplitude's average sessions per user (/api/2/sessions/peruser) per project and session date
-- (the project's time zone): the day's sessions over the users who had one that day, a user
-- being canonical (canonical_amplitude_id: the sessions of a merged user's ids are one user's).
select
    project,
    session_date,
    count(*) as sessions,
    count(distinct canonical_amplitude_id) as users,
    count(*) / count(distinct canonical_amplitude_id) as sessions_per_user
from {{ ref('sessions') }}
group by project, session_date
