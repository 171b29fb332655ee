{{ config(meta={'dagster': {'ref': {'name': 'sessions'}}}) }}
-- Every event with a session_id other than -1 is counted in exactly one session.
select in_sessions, events_with_a_session
from (
    select
        (select coalesce(sum(event_count), 0) from {{ ref('sessions') }}) as in_sessions,
        (select count(*) from {{ ref('events_unique') }} where session_id <> -1)
            as events_with_a_session
)
where in_sessions <> events_with_a_session
