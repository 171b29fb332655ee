-- One row per session: the events of one amplitude_id of one project that share a session_id
-- other than -1 (Amplitude's "no session"). A session_id is the session's start in milliseconds
-- since the epoch and is only unique per user of a project, so the key is (project,
-- amplitude_id, session_id).
--
-- A session belongs to the id its events were sent with, so its key never changes when a merge
-- is loaded later. Its user is canonical_amplitude_id (the original id that id was merged into,
-- or the id itself): the user's session number and the minutes since their previous session
-- count over every session of that user, under any of their ids. A session that runs across
-- the instant its id is merged has events under both ids: two sessions here.
with events as (
    select
        project, amplitude_id, canonical_amplitude_id, session_id, user_id, device_id,
        event_time, event_date, client_event_time, uuid,
        {{ is_inactive('events_unique') }} as inactive
    from {{ ref('events_unique') }} as events_unique
    where session_id <> -1
),

per_session as (
    select
        project,
        amplitude_id,
        session_id,
        -- a function of (project, amplitude_id): one value per session
        any_value(canonical_amplitude_id) as canonical_amplitude_id,
        arg_max(user_id, (event_time, uuid)) filter (where user_id is not null) as user_id,
        arg_min(device_id, (event_time, uuid)) as device_id,
        min(event_time) as first_event_time,
        max(event_time) as last_event_time,
        -- the first event's date: in one zone a later instant never has an earlier date
        min(event_date) as session_date,
        count(*) as event_count,
        -- Amplitude's session length: max - min client_event_time, inactive events left out
        epoch_ms(max(client_event_time) filter (where not inactive))
            - epoch_ms(min(client_event_time) filter (where not inactive)) as length_ms
    from events
    group by project, amplitude_id, session_id
)

select
    project || ':' || amplitude_id || ':' || session_id as session_key,
    project,
    amplitude_id,
    session_id,
    canonical_amplitude_id,
    user_id,
    device_id,
    timezone('UTC', epoch_ms(session_id)) as session_start,
    first_event_time,
    last_event_time,
    epoch(last_event_time - first_event_time) as duration_seconds,
    length_ms,
    event_count,
    session_date,
    row_number() over user_sessions as user_session_number,
    row_number() over user_sessions = 1 as is_first_user_session,
    epoch(first_event_time - lag(last_event_time) over user_sessions) / 60
        as minutes_since_previous_session
from per_session
window user_sessions as (
    partition by project, canonical_amplitude_id
    order by first_event_time, session_id, amplitude_id
)
