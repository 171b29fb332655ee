-- Active users per project and event date (the project's time zone), as Amplitude counts them
-- (/api/2/users, m=active): distinct users (canonical_amplitude_id: a merged user's ids count
-- once) with at least one event that day, events of a type inactive in that project's events
-- list (non_active) excepted.
with events as materialized (
    select
        project, event_date, canonical_amplitude_id,
        {{ is_inactive('events_unique') }} as inactive
    from {{ ref('events_unique') }} as events_unique
),

active as (
    select project, event_date, count(distinct canonical_amplitude_id) as active_users
    from events
    where not inactive
    group by project, event_date
)

select dates.project, dates.event_date, coalesce(active.active_users, 0) as active_users
from ({{ event_dates('events') }}) as dates
left join active using (project, event_date)
