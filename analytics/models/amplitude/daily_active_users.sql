-- Active users per event date in the project's time zone, as Amplitude counts them
-- (/api/2/users, m=active): distinct amplitude_ids with at least one event that day, events of
-- an inactive type (non_active in the events list) excepted.
with events as materialized (
    select event_date, amplitude_id, {{ is_inactive('event_type') }} as inactive
    from {{ ref('events_unique') }}
),

active as (
    select event_date, count(distinct amplitude_id) as active_users
    from events
    where not inactive
    group by event_date
)

select dates.event_date, coalesce(active.active_users, 0) as active_users
from ({{ event_dates('events') }}) as dates
left join active using (event_date)
