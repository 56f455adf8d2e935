FROM debian:12 AS build
