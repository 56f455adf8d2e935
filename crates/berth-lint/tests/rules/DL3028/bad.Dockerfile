# lines: 3
FROM ruby:3.3
RUN gem install rails
