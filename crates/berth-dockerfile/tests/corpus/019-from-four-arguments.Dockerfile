FROM alpine AS builder extra
