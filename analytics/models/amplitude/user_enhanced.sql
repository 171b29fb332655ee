-- One row per user of a project: (project, canonical_amplitude_id), a user as Amplitude counts
-- them (a merged user's ids are one user, under the original id they were merged into; without
-- merges, one row per amplitude_id), with what dbt_amplitude's amplitude__user_enhanced offers:
-- first and last activity under any of the user's ids, event and session totals, average
-- session length and time between sessions. amplitude_ids lists the ids the user's events
-- carry.
with events as (
    select
        project,
        canonical_amplitude_id,
        list(distinct amplitude_id order by amplitude_id) as amplitude_ids,
        min(event_time) as first_event_time,
        max(event_time) as last_event_time,
        -- the first event's date: in one zone a later instant never has an earlier date
        min(event_date) as first_event_date,
        max(event_date) as last_event_date,
        count(*) as total_events,
        count(distinct event_date) as active_days,
        count(distinct device_id) as devices,
        arg_max(user_id, (event_time, uuid)) filter (where user_id is not null) as user_id,
        min(user_creation_time) as user_created_at
    from {{ ref('events_unique') }}
    group by project, canonical_amplitude_id
),

sessions as (
    select
        project,
        canonical_amplitude_id,
        count(*) as total_sessions,
        min(first_event_time) as first_session_at,
        max(last_event_time) as last_session_at,
        avg(duration_seconds) / 60 as average_session_length_in_minutes,
        avg(minutes_since_previous_session) as average_minutes_in_between_sessions
    from {{ ref('sessions') }}
    group by project, canonical_amplitude_id
)

select
    events.project,
    events.canonical_amplitude_id,
    events.amplitude_ids,
    events.user_id,
    events.user_created_at,
    events.first_event_time,
    events.last_event_time,
    events.first_event_date,
    events.last_event_date,
    events.total_events,
    events.active_days,
    events.devices,
    coalesce(sessions.total_sessions, 0) as total_sessions,
    sessions.first_session_at,
    sessions.last_session_at,
    sessions.average_session_length_in_minutes,
    sessions.average_minutes_in_between_sessions
from events
left join sessions using (project, canonical_amplitude_id)
