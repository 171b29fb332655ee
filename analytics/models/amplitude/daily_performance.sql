-- dbt_amplitude's amplitude__daily_performance: per project, event date (the project's time
-- zone) and event type, from the type's first date in the project to the project's last event
-- date, days without events included: the events, sessions and users of that type, and the new
-- users among them (users whose first event ever in the project is on that date). Users are
-- canonical (canonical_amplitude_id: a merged user counts once, new on the day of their first
-- event under any id); a session is its amplitude_id's, as in sessions.
with events as materialized (
    select project, event_date, event_type, amplitude_id, canonical_amplitude_id, session_id
    from {{ ref('events_unique') }}
),

first_dates as (
    -- the date of the first event: in one zone a later instant never has an earlier date
    select project, canonical_amplitude_id, min(event_date) as first_event_date
    from events
    group by project, canonical_amplitude_id
),

types as (
    select project, event_type, min(event_date) as first_date
    from events
    group by project, event_type
),

spine as (
    select dates.project, dates.event_date, types.event_type
    from ({{ event_dates('events') }}) as dates
    join types on types.project = dates.project and dates.event_date >= types.first_date
),

figures as (
    select
        events.project,
        events.event_date,
        events.event_type,
        count(*) as number_events,
        count(distinct case when events.session_id <> -1
                            then events.amplitude_id || ':' || events.session_id end)
            as number_sessions,
        count(distinct events.canonical_amplitude_id) as number_users,
        count(distinct case when first_dates.first_event_date = events.event_date
                            then events.canonical_amplitude_id end) as number_new_users
    from events
    join first_dates using (project, canonical_amplitude_id)
    group by events.project, events.event_date, events.event_type
)

select
    spine.project,
    spine.event_date,
    spine.event_type,
    coalesce(figures.number_events, 0) as number_events,
    coalesce(figures.number_sessions, 0) as number_sessions,
    coalesce(figures.number_users, 0) as number_users,
    coalesce(figures.number_new_users, 0) as number_new_users
from spine
left join figures
    on figures.project = spine.project
    and figures.event_date = spine.event_date
    and figures.event_type is not distinct from spine.event_type
