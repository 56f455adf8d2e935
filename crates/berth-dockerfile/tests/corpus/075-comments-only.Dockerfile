# syntax=docker/dockerfile:1
# This file has comments

#   and blank lines, but no instruction.
