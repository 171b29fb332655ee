-- Every event of events_unique with what dbt_amplitude's amplitude__event_enhanced adds: its
-- place in its session and in its user's history (within its project), its session's figures,
-- and its event type's entry in its project's Amplitude events list. Its user is its
-- canonical_amplitude_id (a merged user's events under all their ids are one history); its
-- session is its amplitude_id's (sessions).
--
-- The numbering windows run over six narrow columns and are joined back by (project, uuid), so
-- a query for one day or one user reads the wide rows of that day or user only (windows over
-- every wide row take four times as long at 1M events).
with numbered as (
    select
        project,
        uuid,
        row_number() over (
            partition by project, canonical_amplitude_id order by event_time, uuid)
            as user_event_number,
        case when session_id <> -1 then row_number() over (
            partition by project, amplitude_id, session_id order by event_time, uuid) end
            as session_event_number
    from {{ ref('events_unique') }}
)

select
    events.*,
    sessions.session_key,
    numbered.session_event_number,
    numbered.user_event_number,
    sessions.first_event_time as session_started_at,
    sessions.last_event_time as session_ended_at,
    sessions.duration_seconds / 60 as session_length_in_minutes,
    sessions.event_count as events_per_session,
    sessions.user_session_number,
    sessions.is_first_user_session,
    sessions.minutes_since_previous_session as minutes_in_between_sessions,
    event_types.id as event_type_id,
    event_types.display as event_type_display,
    event_types.totals as event_type_totals_this_week,
    coalesce(event_types.non_active, false) as event_type_non_active
from {{ ref('events_unique') }} as events
join numbered on numbered.project = events.project and numbered.uuid = events.uuid
left join {{ ref('sessions') }} as sessions
    on sessions.project = events.project
    and sessions.amplitude_id = events.amplitude_id
    and sessions.session_id = events.session_id
left join {{ source('amplitude', 'events_list_current') }} as event_types
    on event_types.project = events.project and event_types.event_type = events.event_type
