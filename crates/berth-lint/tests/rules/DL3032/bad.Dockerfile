# lines: 3
FROM centos:7
RUN yum install -y httpd-2.4.6
