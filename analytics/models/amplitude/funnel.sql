{{ config(materialized='table_macro',
          parameters="steps, first_day, last_day, conversion_window := INTERVAL 1 DAY") }}
-- analytics.funnel(steps, first_day, last_day [, conversion_window := INTERVAL 1 DAY]):
-- Amplitude's funnel (/api/2/funnels, "this order"), for each project: users who did steps[1]
-- on a date from first_day to last_day (the project's time zone), and how many of them went on
-- to do each further step in order, other events in between allowed, all within
-- conversion_window of that first step. Every step-1 event in the range is tried as a start; a
-- user counts at the furthest step any start reached. Events at the same instant are ordered
-- by uuid. A user is canonical (canonical_amplitude_id): the steps of a merged user's ids are
-- one user's path. One row per project with events and step (zeros included), so that
-- `WHERE project = '...'` picks one project's funnel, as the other models are filtered.
with events as (
    select
        project,
        canonical_amplitude_id,
        event_time,
        event_date,
        -- bit k set: this event is of the type of step k + 1 (a type may be several steps)
        list_sum(list_transform(range(len(steps)), lambda k:
            case when steps[k + 1] = event_type then (1::bigint << k) else 0::bigint end
        ))::bigint as mask,
        row_number() over (
            partition by project, canonical_amplitude_id order by event_time, uuid) as position
    from {{ ref('events_unique') }}
    where list_contains(steps, event_type)
),

starts as (
    select project, canonical_amplitude_id, position, event_time
    from events
    where (mask & 1) = 1 and event_date between first_day and last_day
),

reached as (
    select
        starts.project,
        starts.canonical_amplitude_id,
        list_reduce(
            coalesce(list(later.mask order by later.position)
                     filter (where later.position is not null), []::bigint[]),
            lambda depth, mask: case
                when depth < len(steps) and ((mask >> depth) & 1) = 1 then depth + 1
                else depth end,
            1::bigint
        ) as depth
    from starts
    left join events as later
        on later.project = starts.project
        and later.canonical_amplitude_id = starts.canonical_amplitude_id
        and later.position > starts.position
        and later.event_time <= starts.event_time + conversion_window
    group by starts.project, starts.canonical_amplitude_id, starts.position
),

users as (
    select project, canonical_amplitude_id, max(depth) as depth
    from reached
    group by project, canonical_amplitude_id
),

-- every project with an event loaded, so that a funnel nobody entered shows its zeros (the raw
-- view: listing its projects reads no column of its rows)
projects as (
    select distinct project from {{ source('amplitude', 'events') }}
),

counts as (
    select projects.project, numbers.step, count(users.canonical_amplitude_id) as users
    from projects
    cross join (select unnest(range(1, len(steps) + 1)) as step) as numbers
    left join users on users.project = projects.project and users.depth >= numbers.step
    group by projects.project, numbers.step
)

select
    project,
    step::integer as step,
    steps[step] as event_type,
    users,
    users / nullif(first_value(users) over (partition by project order by step), 0)
        as conversion,
    users / nullif(lag(users) over (partition by project order by step), 0) as step_conversion
from counts
order by project, step
