{{ config(materialized='table_macro',
          parameters="start_event, return_event, first_day, last_day, days := 7") }}
-- analytics.retention(start_event, return_event, first_day, last_day [, days := 7]):
-- Amplitude's N-day retention (/api/2/retention): each user who did start_event on a date
-- from first_day to last_day (project time zone) belongs to the cohort of the first such date;
-- on day N (0 to days) of a cohort, retained counts its users who did return_event on the date
-- cohort_date + N (day 0 counts the whole cohort, as Amplitude shows it). An event type of
-- '_all' means any event, '_active' any event of a type not inactive. complete is false while
-- the day lies after the last event date loaded.
with events as (
    select amplitude_id, event_type, event_date, {{ is_inactive('event_type') }} as inactive
    from {{ ref('events_unique') }}
),

cohorts as (
    select amplitude_id, min(event_date) as cohort_date
    from events
    where event_date between first_day and last_day
        and (start_event = '_all' or (start_event = '_active' and not inactive)
             or event_type = start_event)
    group by amplitude_id
),

returns as (
    select distinct amplitude_id, event_date
    from events
    where return_event = '_all' or (return_event = '_active' and not inactive)
        or event_type = return_event
),

grid as (
    select cohort_date, unnest(range(0, days + 1))::integer as day
    from (select distinct cohort_date from cohorts)
)

select
    grid.cohort_date,
    grid.day,
    count(distinct cohorts.amplitude_id) as users,
    case when grid.day = 0 then count(distinct cohorts.amplitude_id)
         else count(distinct returns.amplitude_id) end as retained,
    retained / users as retention,
    grid.cohort_date + grid.day <= (select max(event_date) from events) as complete
from grid
join cohorts using (cohort_date)
left join returns
    on returns.amplitude_id = cohorts.amplitude_id
    and returns.event_date = grid.cohort_date + grid.day
group by grid.cohort_date, grid.day
order by grid.cohort_date, grid.day
