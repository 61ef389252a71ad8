/* chathub - real-time chat hub
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * chathub-bench's modes. Each runs on the orchestrator thread: it sets up the connections and
 * the event loops (bench-loop.h), drives them through their phases and reports each step
 * (bench-report.h). The loops are stopped by the caller.
 */

#pragma once

int
run_idle (void);
int
run_fanout (void);
int
run_storm (void);
int
run_recover (void);
int
run_shutdown (void);
