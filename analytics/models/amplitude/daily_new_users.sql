-- New users per event date in the project's time zone, as Amplitude counts them
-- (/api/2/users, m=new): amplitude_ids whose first event ever (any type, inactive ones
-- included) falls on that date. "Ever" is what the warehouse holds: an event loaded later with
-- an earlier event_time moves its user's first day.
with events as materialized (
    select event_date, amplitude_id, event_time from {{ ref('events_unique') }}
),

new_users as (
    select first_event_date as event_date, count(*) as new_users
    from (
        select {{ local_date('min(event_time)') }} as first_event_date
        from events
        group by amplitude_id
    )
    group by first_event_date
)

select dates.event_date, coalesce(new_users.new_users, 0) as new_users
from ({{ event_dates('events') }}) as dates
left join new_users using (event_date)
