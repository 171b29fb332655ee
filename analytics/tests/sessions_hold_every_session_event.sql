{{ config(tags=['amplitude'], meta={'dagster': {'ref': {'name': 'sessions'}}}) }}
-- Every event with a session_id other than -1 is counted in exactly one session of its project.
with in_sessions as (
    select project, sum(event_count) as events from {{ ref('sessions') }} group by project
),

with_a_session as (
    select project, count(*) as events
    from {{ ref('events_unique') }}
    where session_id <> -1
    group by project
)

select project, in_sessions.events as in_sessions, with_a_session.events as events_with_a_session
from in_sessions
full join with_a_session using (project)
where in_sessions.events is distinct from with_a_session.events
