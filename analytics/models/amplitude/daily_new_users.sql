-- New users per project and event date (the project's time zone), as Amplitude counts them
-- (/api/2/users, m=new): users (canonical_amplitude_id) whose first event ever in the project,
-- under any of their ids and of any type (inactive ones included), falls on that date. "Ever"
-- is what the warehouse holds: an event loaded later with an earlier event_time moves its
-- user's first day, and so does a merge that joins an id seen earlier to its user.
with events as materialized (
    select project, event_date, canonical_amplitude_id from {{ ref('events_unique') }}
),

new_users as (
    select project, first_event_date as event_date, count(*) as new_users
    from (
        -- the date of the first event: in one zone a later instant never has an earlier date
        select project, min(event_date) as first_event_date
        from events
        group by project, canonical_amplitude_id
    )
    group by project, first_event_date
)

select dates.project, dates.event_date, coalesce(new_users.new_users, 0) as new_users
from ({{ event_dates('events') }}) as dates
left join new_users using (project, event_date)
