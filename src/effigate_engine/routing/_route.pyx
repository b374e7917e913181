# cython: language_level=3
"""Routing of tickets, GIL released: each ticket's first matching rule.

The Python side has already reduced every matched field to codes: per field a small
vocabulary code per ticket (-1: null or a value no rule mentions) and, per rule, a table over
those codes saying which values the rule accepts (column 0: null); the text patterns
(subject substrings, requester domains) to one boolean column per rule that has any. So the
kernel only compares small integers, and stops at the first rule that accepts every field.
"""

from libc.stdint cimport int8_t, int32_t, uint8_t


cdef class RouteTable:
    """The rules, flattened: per rule g and matched field, ``*_ok[g, code + 1]`` says whether
    the rule accepts the value of that code (column 0: null); ``after_required[g]`` is -1
    (any), 0 or 1; ``pattern_row[g]`` is the row of the ticket columns' pattern matrix that
    says whether each ticket's subject and requester satisfy the rule's patterns (-1: the
    rule has none)."""

    cdef const uint8_t[:, ::1] priority_ok
    cdef const uint8_t[:, ::1] level_ok
    cdef const uint8_t[:, ::1] job_ok
    cdef const uint8_t[:, ::1] client_ok
    cdef const uint8_t[:, ::1] channel_ok
    cdef const int8_t[::1] after_required
    cdef const int32_t[::1] pattern_row
    cdef readonly Py_ssize_t rules

    def __init__(self, priority_ok, level_ok, job_ok, client_ok, channel_ok, after_required,
                 pattern_row):
        self.priority_ok = priority_ok
        self.level_ok = level_ok
        self.job_ok = job_ok
        self.client_ok = client_ok
        self.channel_ok = channel_ok
        self.after_required = after_required
        self.pattern_row = pattern_row
        self.rules = self.after_required.shape[0]
        for table in (priority_ok, level_ok, job_ok, client_ok, channel_ok):
            if len(table) != self.rules:
                raise ValueError("every acceptance table must have one row per rule")
        if self.pattern_row.shape[0] != self.rules:
            raise ValueError("pattern_row must have one entry per rule")


cdef class RouteColumns:
    """The ticket fields rules match on, one entry per ticket: the codes of priority, support
    level, job type, client and channel (-1: null or a value no rule mentions, and each code
    below its table's width - 1), the after-hours flag (-1 null, 0, 1) and the pattern matrix
    (one row per rule with patterns, one column per ticket)."""

    cdef const int32_t[::1] priority
    cdef const int32_t[::1] support_level
    cdef const int32_t[::1] job_type
    cdef const int32_t[::1] client
    cdef const int32_t[::1] channel
    cdef const int8_t[::1] after_hours
    cdef const uint8_t[:, ::1] pattern_ok
    cdef readonly Py_ssize_t tickets

    def __init__(self, priority, support_level, job_type, client, channel, after_hours,
                 pattern_ok):
        self.priority = priority
        self.support_level = support_level
        self.job_type = job_type
        self.client = client
        self.channel = channel
        self.after_hours = after_hours
        self.pattern_ok = pattern_ok
        self.tickets = self.priority.shape[0]
        for column in (support_level, job_type, client, channel, after_hours):
            if len(column) != self.tickets:
                raise ValueError("every match column must have one entry per ticket")
        if self.pattern_ok.shape[0] and self.pattern_ok.shape[1] != self.tickets:
            raise ValueError("the pattern matrix must have one column per ticket")


def match_rules(RouteColumns tickets, RouteTable rules, int32_t[::1] out) -> int:
    """out[t] = index of the first rule that matches ticket t (-1: none). Returns -1, or the
    first ticket whose codes lie outside the rules' tables (then nothing is written)."""
    cdef Py_ssize_t n = tickets.tickets, t, g, rows = rules.rules
    cdef Py_ssize_t patterns = tickets.pattern_ok.shape[0]
    cdef int32_t found, row
    cdef const int32_t[::1] priority = tickets.priority
    cdef const int32_t[::1] support_level = tickets.support_level
    cdef const int32_t[::1] job_type = tickets.job_type
    cdef const int32_t[::1] client = tickets.client
    cdef const int32_t[::1] channel = tickets.channel
    cdef const int8_t[::1] after_hours = tickets.after_hours
    cdef const uint8_t[:, ::1] pattern_ok = tickets.pattern_ok
    cdef const uint8_t[:, ::1] priority_ok = rules.priority_ok
    cdef const uint8_t[:, ::1] level_ok = rules.level_ok
    cdef const uint8_t[:, ::1] job_ok = rules.job_ok
    cdef const uint8_t[:, ::1] client_ok = rules.client_ok
    cdef const uint8_t[:, ::1] channel_ok = rules.channel_ok
    cdef const int8_t[::1] after_required = rules.after_required
    cdef const int32_t[::1] pattern_row = rules.pattern_row
    if out.shape[0] != n:
        raise ValueError("out must have one entry per ticket")
    for g in range(rows):
        if pattern_row[g] >= patterns:
            raise ValueError("pattern_row names a row the pattern matrix does not have")
    cdef Py_ssize_t bad = -1
    with nogil:
        for t in range(n):
            if (priority[t] + 1 >= priority_ok.shape[1] or priority[t] < -1
                    or support_level[t] + 1 >= level_ok.shape[1] or support_level[t] < -1
                    or job_type[t] + 1 >= job_ok.shape[1] or job_type[t] < -1
                    or client[t] + 1 >= client_ok.shape[1] or client[t] < -1
                    or channel[t] + 1 >= channel_ok.shape[1] or channel[t] < -1):
                bad = t
                break
    if bad >= 0:
        return bad
    with nogil:
        for t in range(n):
            found = -1
            for g in range(rows):
                row = pattern_row[g]
                if (priority_ok[g, priority[t] + 1] and level_ok[g, support_level[t] + 1]
                        and job_ok[g, job_type[t] + 1] and client_ok[g, client[t] + 1]
                        and channel_ok[g, channel[t] + 1]
                        and (after_required[g] < 0 or after_hours[t] == after_required[g])
                        and (row < 0 or pattern_ok[row, t])):
                    found = <int32_t>g
                    break
            out[t] = found
    return -1
