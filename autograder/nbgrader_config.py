"""nbgrader configuration for the course. nbgrader reads it only when run from this folder."""
import os
import sys

c = get_config()  # noqa: F821 (provided by nbgrader)

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)  # for feedback_filters beside this file
c.CourseDirectory.root = here
c.CourseDirectory.course_id = "backend-to-ai-engineer"
c.CourseDirectory.source_directory = "source"
# The student copies are the notebooks learners open and the book shows.
c.CourseDirectory.release_directory = os.path.join("..", "notebooks")
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(here, "gradebook.db")


# Files a lab writes while it runs are never copied into a release or a submission.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "results", "*.executed.ipynb"]

# What a learner sees in place of each solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Grading runs the short form of every lab, and no cell may run longer than this.
os.environ["LABKIT_QUICK"] = "1"
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True
# nbgrader gives up on a whole notebook when a cell's output arrives more than iopub_timeout
# after its reply (4 s by default); on a busy grading machine that is a crash, not a grade.
c.Execute.iopub_timeout = 60

# Every submission runs in a sandbox (labkit.course.sandbox): its own network and process namespaces,
# the course files read-only, nothing of the course folder but its own graded copy, limits on
# CPU time, memory, processes, file size and printed output. Where no sandbox can start,
# autograde refuses; `--SandboxedExecute.allow_unsandboxed=True` grades without one. A run under
# `python -m labkit.course.shared_servers -- nbgrader autograde ...` shares its model servers:
# only their broker's Unix socket is bound into each sandbox.
from labkit.course.sandbox import SandboxedExecute  # noqa: E402
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern,  # noqa: E402
                                    LimitOutput, SaveAutoGrades)

c.Autograde.autograde_preprocessors = [SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
# On unless LABKIT_SANDBOX=off (or --SandboxedExecute.sandbox=False): then kernels run as plain
# nbgrader runs them, with the grader's rights. Any other value keeps it on.
sandboxed = os.environ.get("LABKIT_SANDBOX", "on").strip().lower() != "off"
c.SandboxedExecute.sandbox = sandboxed
c.SandboxedExecute.guard = sandboxed  # put back what tests call before each graded test cell

# LMS downloads named <student-id>_<notebook>.ipynb, collected by `nbgrader zip_collect`.
c.ZipCollectApp.archive_directory = "archive"
c.ZipCollectApp.collector_plugin = "nbgrader.plugins.zipcollect.FileNameCollectorPlugin"
c.FileNameCollectorPlugin.named_regexp = r"^(?:.*/)?(?P<student_id>[^_/]+)_(?P<file_id>[^/]+\.ipynb)$"

# Feedback shows each learner their grades without revealing the hidden tests.
from feedback_filters import ShortenTracebacks  # noqa: E402
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402

c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, ShortenTracebacks, CSSHTMLHeaderPreprocessor]
