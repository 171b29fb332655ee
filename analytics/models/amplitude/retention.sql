{{ config(materialized='table_macro',
          parameters="start_event, return_event, first_day, last_day, days := 7") }}
-- analytics.retention(start_event, return_event, first_day, last_day [, days := 7]):
-- Amplitude's N-day retention (/api/2/retention), for each project: each user who did
-- start_event on a date from first_day to last_day (the project's time zone) belongs to the
-- cohort of the first such date; on day N (0 to days) of a cohort, retained counts its users who
-- did return_event on the date cohort_date + N (day 0 counts the whole cohort, as Amplitude
-- shows it). An event type of '_all' means any event, '_active' any event of a type not
-- inactive in the project's events list. complete is false while the day lies after the
-- project's last event date loaded. A user is canonical (canonical_amplitude_id): a merged
-- user's ids are one member of one cohort, and return under any of them. One row per project,
-- cohort and day: `WHERE project = '...'` picks one project's table.
with events as (
    select
        project, canonical_amplitude_id, event_type, event_date,
        {{ is_inactive('events_unique') }} as inactive
    from {{ ref('events_unique') }} as events_unique
),

cohorts as (
    select project, canonical_amplitude_id, min(event_date) as cohort_date
    from events
    where event_date between first_day and last_day
        and (start_event = '_all' or (start_event = '_active' and not inactive)
             or event_type = start_event)
    group by project, canonical_amplitude_id
),

returns as (
    select distinct project, canonical_amplitude_id, event_date
    from events
    where return_event = '_all' or (return_event = '_active' and not inactive)
        or event_type = return_event
),

last_dates as (
    select project, max(event_date) as last_date from events group by project
),

grid as (
    select project, cohort_date, unnest(range(0, days + 1))::integer as day
    from (select distinct project, cohort_date from cohorts)
)

select
    grid.project,
    grid.cohort_date,
    grid.day,
    count(distinct cohorts.canonical_amplitude_id) as users,
    case when grid.day = 0 then count(distinct cohorts.canonical_amplitude_id)
         else count(distinct returns.canonical_amplitude_id) end as retained,
    retained / users as retention,
    grid.cohort_date + grid.day <= any_value(last_dates.last_date) as complete
from grid
join cohorts using (project, cohort_date)
join last_dates using (project)
left join returns
    on returns.project = cohorts.project
    and returns.canonical_amplitude_id = cohorts.canonical_amplitude_id
    and returns.event_date = grid.cohort_date + grid.day
group by grid.project, grid.cohort_date, grid.day
order by grid.project, grid.cohort_date, grid.day
