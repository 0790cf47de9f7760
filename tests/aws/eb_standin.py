#!/usr/bin/env python3
"""A strict stand-in for AWS Elastic Beanstalk, for ionroller's tests.

moto's Elastic Beanstalk is a stub (no application versions, no environment resources, no
termination; CreateEnvironment creates nothing). This server speaks EB's query protocol
(API version 2010-12-01) for exactly the calls ionroller's driver makes, and does in moto
what EB does behind the scenes:

* CreateEnvironment creates, in moto, a classic load balancer and an Auto Scaling group of
  running instances for the environment. Status goes Launching -> Ready after
  EB_STANDIN_LAUNCH_SECS, health Grey -> Green EB_STANDIN_HEALTHY_SECS later.
* DescribeEnvironmentResources names that group, its instances and its load balancer.
* TerminateEnvironment deletes them; status Terminating -> Terminated after
  EB_STANDIN_TERMINATE_SECS.

Every request parameter is checked against the API reference: a missing required parameter,
a value outside its documented length or range, or a malformed value gets the error AWS
documents (400 MissingParameter, MissingRequiredParameter, ValidationError,
InvalidParameterValue, InvalidParameterCombination, ConfigurationValidationException), and a
request without a SigV4 Authorization header for the elasticbeanstalk service gets 403
MissingAuthenticationToken. Two rules are the stand-in's own, so that a change in the driver
cannot go unnoticed: a parameter the API does not have, and one the API has but the driver
never sends (so the stand-in does not model it), are refused with 400.

Configs are checked as EB checks them: ListAvailableSolutionStacks answers moto's list of
stacks (AWS's), DescribeConfigurationOptions describes a Docker stack's options from OPTIONS
(namespaces, names, allowed values, ranges, lengths, patterns, the instance types EB offers), and
CreateEnvironment refuses option settings that break those same descriptions.

Also as AWS does: an application version created with Process=true is Processing for
EB_STANDIN_PROCESS_SECS and cannot be deployed until then; a bundle without a valid Dockerrun
launches an environment that goes Red (EB reads the bundle at deployment, not at upload), as
does one without an instance profile (EB no longer creates a default one); a
non-Ready environment cannot be terminated ("Must be Ready").

Run it with the moto venv's python (it needs boto3):
    python eb_standin.py --port 0 --port-file FILE --moto http://127.0.0.1:5055
Control (tests only): GET /standin/state returns the environments as JSON;
POST /standin/health?environment=NAME&health=Red sets an environment's health;
POST /standin/hold?environment=NAME&launching=true keeps it Launching until launching=false;
POST /standin/rebuild?environment=NAME replaces its Auto Scaling group (RebuildEnvironment).
"""

import argparse
import base64
import io
import json
import os
import re
import threading
import time
import uuid
import zipfile
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape

import boto3
import botocore.exceptions
from botocore.config import Config

API_VERSION = "2010-12-01"
XMLNS = "http://elasticbeanstalk.amazonaws.com/docs/2010-12-01/"
REGION = os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
ACCOUNT = "123456789012"

LAUNCH_SECS = float(os.environ.get("EB_STANDIN_LAUNCH_SECS", "2"))
HEALTHY_SECS = float(os.environ.get("EB_STANDIN_HEALTHY_SECS", "1"))
TERMINATE_SECS = float(os.environ.get("EB_STANDIN_TERMINATE_SECS", "1"))
PROCESS_SECS = float(os.environ.get("EB_STANDIN_PROCESS_SECS", "1"))
# DescribeEnvironments without MaxRecords answers everything at once (as documented). With
# MaxRecords, a page may hold fewer than asked for (callers must follow NextToken); this cap
# makes every test exercise that.
PAGE_SIZE = int(os.environ.get("EB_STANDIN_PAGE_SIZE", "2"))
# CreateEnvironment: AWS allows 50 tags on a resource and EB adds 3 of its own.
ENVIRONMENT_TAG_LIMIT = 47
# EB's documented limit on environment properties, counted as "key=value" strings.
ENV_PROPERTIES_MAX_BYTES = 4096
ENV_NAMESPACE = "aws:elasticbeanstalk:application:environment"
# Environment secrets (platform versions from 26 March 2025): the option name is the variable's
# name, the value the ARN of a Secrets Manager secret or an SSM parameter, which EB fetches as
# each instance boots. EB checks the ARN's form, not that the secret exists or that the
# instance profile may read it (that fails at launch, on the instance).
SECRETS_NAMESPACE = "aws:elasticbeanstalk:application:environmentsecrets"
SECRET_ARN_RE = re.compile(
    r"^arn:aws(-[a-z]+)*:secretsmanager:[a-z0-9]+(-[a-z0-9]+){2,}:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}(:[^:]+)?$")
PARAMETER_ARN_RE = re.compile(
    r"^arn:aws(-[a-z]+)*:ssm:[a-z0-9]+(-[a-z0-9]+){2,}:\d{12}:parameter/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
INSTANCE_PROFILE = ("aws:autoscaling:launchconfiguration", "IamInstanceProfile")
# The EC2 instance types EB offers for its instances (the ValueOptions of
# aws:autoscaling:launchconfiguration InstanceType in DescribeConfigurationOptions).
INSTANCE_TYPES = [
    f"{family}.{size}"
    for family, sizes in (
        ("t2", ("nano", "micro", "small", "medium", "large", "xlarge", "2xlarge")),
        ("t3", ("nano", "micro", "small", "medium", "large", "xlarge", "2xlarge")),
        ("t3a", ("nano", "micro", "small", "medium", "large", "xlarge", "2xlarge")),
        ("t4g", ("nano", "micro", "small", "medium", "large", "xlarge", "2xlarge")),
        ("m5", ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")),
        ("m6i", ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")),
        ("m7g", ("medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge")),
        ("c5", ("large", "xlarge", "2xlarge", "4xlarge", "9xlarge", "12xlarge", "18xlarge", "24xlarge")),
        ("c6i", ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")),
        ("c7g", ("medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge")),
        ("r5", ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")),
        ("r6i", ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")),
    )
    for size in sizes
]
DEFAULT_INSTANCE_TYPE = "t3.micro"
BOOL = ["true", "false"]


def option(value_type="Scalar", default="", severity="NoInterruption", values=None, lo=None, hi=None,
           max_length=None, regex=None):
    """One ConfigurationOptionDescription (regex: (pattern, label))."""
    return {"ValueType": value_type, "DefaultValue": default, "ChangeSeverity": severity,
            "ValueOptions": values, "MinValue": lo, "MaxValue": hi, "MaxLength": max_length, "Regex": regex}


# What DescribeConfigurationOptions says a Docker solution stack's options are, per namespace
# (from EB's "General options for all environments" and the Docker platform's options), and
# what CreateEnvironment checks settings against: a namespace or option not here is refused
# ("Invalid option specification"), as is a value outside its description.
OPTIONS = {
    "aws:autoscaling:asg": {
        "Availability Zones": option(default="Any", severity="RestartEnvironment",
                                     values=["Any", "Any 1", "Any 2", "Any 3"]),
        "Cooldown": option(default="360", lo=0, hi=10000),
        "Custom Availability Zones": option("List", severity="RestartEnvironment", max_length=255),
        "EnableCapacityRebalancing": option(default="false", values=BOOL),
        "MinSize": option(default="1", lo=1, hi=10000),
        "MaxSize": option(default="4", lo=1, hi=10000),
    },
    "aws:autoscaling:launchconfiguration": {
        "DisableIMDSv1": option(default="true", severity="RestartEnvironment", values=BOOL),
        "EC2KeyName": option(severity="RestartEnvironment", max_length=255),
        "IamInstanceProfile": option(severity="RestartEnvironment", max_length=2048),
        "ImageId": option(severity="RestartEnvironment", regex=(r"ami-[0-9a-f]{8,17}", "an AMI id (ami-...)")),
        "InstanceType": option(default=DEFAULT_INSTANCE_TYPE, severity="RestartEnvironment", values=INSTANCE_TYPES),
        "MonitoringInterval": option(default="5 minute", values=["1 minute", "5 minute"]),
        "SecurityGroups": option("List", severity="RestartEnvironment"),
        "SSHSourceRestriction": option(severity="RestartEnvironment"),
        "BlockDeviceMappings": option(severity="RestartEnvironment"),
        "RootVolumeType": option(severity="RestartEnvironment", values=["standard", "gp2", "gp3", "io1"]),
        "RootVolumeSize": option(severity="RestartEnvironment", lo=10, hi=16384),
        "RootVolumeIOPS": option(severity="RestartEnvironment", lo=100, hi=64000),
    },
    "aws:autoscaling:scheduledaction": {
        "StartTime": option(), "EndTime": option(), "Recurrence": option(),
        "MinSize": option(lo=0, hi=10000), "MaxSize": option(lo=0, hi=10000),
        "DesiredCapacity": option(lo=0, hi=10000), "Suspend": option(default="false", values=BOOL),
    },
    "aws:autoscaling:trigger": {
        "MeasureName": option(default="NetworkOut", values=[
            "CPUUtilization", "NetworkIn", "NetworkOut", "DiskWriteOps", "DiskReadBytes", "DiskReadOps",
            "DiskWriteBytes", "Latency", "RequestCount", "HealthyHostCount", "UnhealthyHostCount"]),
        "Statistic": option(default="Average", values=["Minimum", "Maximum", "Sum", "Average"]),
        "Unit": option(default="Bytes", values=["Seconds", "Percent", "Bytes", "Bits", "Count",
                                                 "Bytes/Second", "Bits/Second", "Count/Second", "None"]),
        "Period": option(default="5", lo=1, hi=600),
        "EvaluationPeriods": option(default="1", lo=1, hi=600),
        "BreachDuration": option(default="5", lo=1, hi=600),
        "UpperThreshold": option(default="6000000", lo=0, hi=20000000),
        "UpperBreachScaleIncrement": option(default="1"),
        "LowerThreshold": option(default="2000000", lo=0, hi=20000000),
        "LowerBreachScaleIncrement": option(default="-1"),
    },
    "aws:autoscaling:updatepolicy:rollingupdate": {
        "RollingUpdateEnabled": option(default="false", values=BOOL),
        "RollingUpdateType": option(default="Time", values=["Time", "Health", "Immutable"]),
        "MaxBatchSize": option(lo=1, hi=10000),
        "MinInstancesInService": option(lo=0, hi=9999),
        "PauseTime": option(), "Timeout": option(default="PT30M"),
    },
    "aws:ec2:instances": {
        "EnableSpot": option(default="false", severity="RestartEnvironment", values=BOOL),
        "InstanceTypes": option("List", severity="RestartEnvironment", values=INSTANCE_TYPES),
        "SpotFleetOnDemandBase": option(default="0", lo=0, hi=10000),
        "SpotFleetOnDemandAboveBasePercentage": option(default="0", lo=0, hi=100),
        "SpotMaxPrice": option(),
        "SupportedArchitectures": option("List", severity="RestartEnvironment", values=["x86_64", "arm64"]),
    },
    "aws:ec2:vpc": {
        "VPCId": option(severity="RestartEnvironment", regex=(r"vpc-[0-9a-f]{8,17}", "a VPC id (vpc-...)")),
        "Subnets": option("List", severity="RestartEnvironment"),
        "ELBSubnets": option("List", severity="RestartEnvironment"),
        "ELBScheme": option(default="public", severity="RestartEnvironment", values=["public", "internal"]),
        "DBSubnets": option("List", severity="RestartEnvironment"),
        "AssociatePublicIpAddress": option(severity="RestartEnvironment", values=BOOL),
    },
    "aws:elasticbeanstalk:application": {
        "Application Healthcheck URL": option(max_length=255),
    },
    # Environment properties, secrets and static files: the option names are the user's own.
    ENV_NAMESPACE: {},
    SECRETS_NAMESPACE: {},
    "aws:elasticbeanstalk:environment:proxy:staticfiles": {},
    "aws:elasticbeanstalk:cloudwatch:logs": {
        "StreamLogs": option(default="false", values=BOOL),
        "DeleteOnTerminate": option(default="false", values=BOOL),
        "RetentionInDays": option(default="7", values=[
            "1", "3", "5", "7", "14", "30", "60", "90", "120", "150", "180", "365", "400", "545", "731",
            "1827", "3653"]),
    },
    "aws:elasticbeanstalk:cloudwatch:logs:health": {
        "HealthStreamingEnabled": option(default="false", values=BOOL),
        "DeleteOnTerminate": option(default="false", values=BOOL),
        "RetentionInDays": option(default="7", values=["1", "3", "5", "7", "14", "30", "60", "90", "365"]),
    },
    "aws:elasticbeanstalk:command": {
        "DeploymentPolicy": option(default="AllAtOnce", values=[
            "AllAtOnce", "Rolling", "RollingWithAdditionalBatch", "Immutable", "TrafficSplitting"]),
        "Timeout": option(default="600", lo=1, hi=3600),
        "BatchSizeType": option(default="Percentage", values=["Percentage", "Fixed"]),
        "BatchSize": option(default="100", lo=1, hi=10000),
        "IgnoreHealthCheck": option(default="false", values=BOOL),
    },
    "aws:elasticbeanstalk:environment": {
        "EnvironmentType": option(default="LoadBalanced", severity="RestartEnvironment",
                                  values=["SingleInstance", "LoadBalanced"]),
        "ServiceRole": option(severity="RestartEnvironment", max_length=2048),
        "LoadBalancerType": option(default="classic", severity="RestartEnvironment",
                                   values=["classic", "application", "network"]),
        "LoadBalancerIsShared": option(default="false", severity="RestartEnvironment", values=BOOL),
    },
    "aws:elasticbeanstalk:environment:process:default": {
        "DeregistrationDelay": option(default="20", lo=0, hi=3600),
        "HealthCheckInterval": option(default="15", lo=5, hi=300),
        "HealthCheckPath": option(default="/", regex=(r"/.*", "a path starting with /")),
        "HealthCheckTimeout": option(default="5", lo=2, hi=60),
        "HealthyThresholdCount": option(default="3", lo=2, hi=10),
        "MatcherHTTPCode": option(default="200"),
        "Port": option(default="80", lo=1, hi=65535),
        "Protocol": option(default="HTTP", values=["HTTP", "HTTPS", "TCP"]),
        "StickinessEnabled": option(default="false", values=BOOL),
        "StickinessLBCookieDuration": option(default="86400", lo=1, hi=604800),
        "StickinessType": option(default="lb_cookie", values=["lb_cookie"]),
        "UnhealthyThresholdCount": option(default="5", lo=2, hi=10),
    },
    "aws:elasticbeanstalk:environment:proxy": {
        "ProxyServer": option(default="nginx", severity="RestartApplicationServer", values=["nginx", "none"]),
    },
    "aws:elasticbeanstalk:healthreporting:system": {
        "SystemType": option(default="enhanced", values=["basic", "enhanced"]),
        "ConfigDocument": option(),
        "EnhancedHealthAuthEnabled": option(default="true", values=BOOL),
    },
    "aws:elasticbeanstalk:hostmanager": {
        "LogPublicationControl": option(default="false", values=BOOL),
    },
    "aws:elasticbeanstalk:managedactions": {
        "ManagedActionsEnabled": option(default="false", values=BOOL),
        "PreferredStartTime": option(regex=(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun):[0-2][0-9]:[0-5][0-9]",
                                            "day:hour:minute, e.g. Sun:01:00")),
        "ServiceRoleForManagedUpdates": option(max_length=2048),
    },
    "aws:elasticbeanstalk:managedactions:platformupdate": {
        "UpdateLevel": option(default="minor", values=["patch", "minor"]),
        "InstanceRefreshEnabled": option(default="false", values=BOOL),
    },
    "aws:elasticbeanstalk:monitoring": {
        "Automatically Terminate Unhealthy Instances": option(default="true", values=BOOL),
    },
    "aws:elasticbeanstalk:sns:topics": {
        "Notification Endpoint": option(max_length=255),
        "Notification Protocol": option(default="email", values=["http", "https", "email", "email-json", "sqs"]),
        "Notification Topic ARN": option(), "Notification Topic Name": option(max_length=256),
    },
    "aws:elasticbeanstalk:xray": {
        "XRayEnabled": option(default="false", values=BOOL),
    },
    "aws:elb:healthcheck": {
        "HealthyThreshold": option(default="3", lo=2, hi=10),
        "Interval": option(default="10", lo=5, hi=300),
        "Timeout": option(default="5", lo=2, hi=60),
        "UnhealthyThreshold": option(default="5", lo=2, hi=10),
    },
    "aws:elb:listener": {
        "ListenerProtocol": option(default="HTTP", values=["HTTP", "TCP"]),
        "InstancePort": option(default="80", lo=1, hi=65535),
        "InstanceProtocol": option(default="HTTP", values=["HTTP", "TCP"]),
        "PolicyNames": option("List"),
        "ListenerEnabled": option(default="true", values=BOOL),
    },
    "aws:elb:loadbalancer": {
        "CrossZone": option(default="false", values=BOOL),
        "SecurityGroups": option("List"),
        "ManagedSecurityGroup": option(),
    },
    "aws:elb:policies": {
        "ConnectionDrainingEnabled": option(default="false", values=BOOL),
        "ConnectionDrainingTimeout": option(default="20", lo=1, hi=3600),
        "ConnectionSettingIdleTimeout": option(default="60", lo=1, hi=3600),
        "Stickiness Cookie Expiration": option(default="0", lo=0, hi=1000000),
        "Stickiness Policy": option(default="false", values=BOOL),
    },
    "aws:elbv2:listener:default": {
        "ListenerEnabled": option(default="true", values=BOOL),
        "DefaultProcess": option(default="default"),
        "Protocol": option(default="HTTP", values=["HTTP", "HTTPS"]),
        "Rules": option("List"),
        "SSLCertificateArns": option(), "SSLPolicy": option(),
    },
    "aws:elbv2:loadbalancer": {
        "AccessLogsS3Bucket": option(), "AccessLogsS3Enabled": option(default="false", values=BOOL),
        "AccessLogsS3Prefix": option(), "IdleTimeout": option(default="60", lo=1, hi=3600),
        "ManagedSecurityGroup": option(), "SecurityGroups": option("List"),
        "SharedLoadBalancer": option(),
    },
    "aws:rds:dbinstance": {
        "DBEngine": option(default="mysql", severity="RestartEnvironment", values=[
            "mysql", "oracle-se1", "sqlserver-ex", "sqlserver-web", "sqlserver-se", "postgres", "mariadb"]),
        "DBAllocatedStorage": option(lo=5, hi=6144),
        "DBInstanceClass": option(default="db.t3.micro"),
        "DBPassword": option(max_length=128), "DBUser": option(default="ebroot", max_length=16),
        "DBDeletionPolicy": option(default="Delete", values=["Delete", "Snapshot", "Retain"]),
        "HasCoupledDatabase": option(default="false", values=BOOL),
        "MultiAZDatabase": option(default="false", values=BOOL),
    },
}
# Namespaces whose option names the user chooses (EB describes none of them for a stack).
FREE_FORM = {ENV_NAMESPACE, SECRETS_NAMESPACE,
             "aws:elasticbeanstalk:environment:proxy:staticfiles"}
NAMESPACES = set(OPTIONS)

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{2,38}[a-zA-Z0-9]$")
TAG_RE = re.compile(r"^[\w\s.:/=+\-@]*$")


class ApiError(Exception):
    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def now_iso(t=None):
    t = time.time() if t is None else t
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---------------------------------------------------------------- request parameters


class Params:
    """The form parameters of one call; remembers which were read to reject unknown ones."""

    def __init__(self, action, raw):
        self.action = action
        self.raw = raw
        self.used = {"Action", "Version"}

    def opt(self, name, lo=None, hi=None, pattern=None):
        self.used.add(name)
        value = self.raw.get(name)
        if value is None:
            return None
        if lo is not None and len(value) < lo:
            raise validation_error(name, value, f"greater than or equal to {lo}")
        if hi is not None and len(value) > hi:
            raise validation_error(name, value, f"less than or equal to {hi}")
        if pattern is not None and not pattern.match(value):
            raise ApiError("InvalidParameterValue", f"Value '{value}' at '{name}' is not valid.")
        return value

    def req(self, name, **kw):
        value = self.opt(name, **kw)
        if value is None:
            raise ApiError("MissingParameter", f"The request must contain the parameter {name}")
        return value

    def boolean(self, name, default):
        value = self.opt(name)
        if value is None:
            return default
        if value not in ("true", "false"):
            raise ApiError("InvalidParameterValue", f"Value '{value}' at '{name}' must be true or false.")
        return value == "true"

    def integer(self, name, lo, hi):
        value = self.opt(name)
        if value is None:
            return None
        if not value.isdigit():
            raise ApiError("InvalidParameterValue", f"Value '{value}' at '{name}' is not an integer.")
        if int(value) < lo:
            raise validation_error(name, value, f"greater than or equal to {lo}", "value")
        if int(value) > hi:
            raise validation_error(name, value, f"less than or equal to {hi}", "value")
        return int(value)

    def unsupported(self, *names):
        """Parameters the API has but the driver never sends: refused, not silently ignored."""
        for name in names:
            if any(k == name or k.startswith(name + ".") for k in self.raw):
                raise ApiError("InvalidParameterValue",
                               f"{self.action}: the EB stand-in does not model {name} (the driver never sends it).")

    def members(self, name, fields=None, limit=None):
        """`Name.member.N` (strings) or `Name.member.N.Field` (structures), N from 1, no gaps.
        An empty list arrives as a bare `Name=` (as the AWS SDKs send it)."""
        prefix = name + ".member."
        keys = [k for k in self.raw if k.startswith(prefix)]
        self.used.update(keys)
        if name in self.raw:
            if self.raw[name] != "" or keys:
                raise ApiError("InvalidParameterValue", f"{name} must be given as {name}.member.N.")
            self.used.add(name)
        indexes = sorted({int(k[len(prefix):].split(".")[0]) for k in keys if k[len(prefix):].split(".")[0].isdigit()})
        if len(indexes) != len({k[len(prefix):].split(".")[0] for k in keys}) or indexes != list(range(1, len(indexes) + 1)):
            raise ApiError("InvalidParameterValue", f"{name} members must be numbered 1, 2, 3, ... without gaps.")
        if limit is not None and len(indexes) > limit:
            raise validation_error(name, f"{len(indexes)} members", f"less than or equal to {limit}", "length")
        out = []
        for i in indexes:
            if fields is None:
                value = self.raw.get(f"{prefix}{i}")
                if value is None:
                    raise ApiError("InvalidParameterValue", f"{name}.member.{i} has no value.")
                out.append(value)
            else:
                item = {}
                for f in self.raw:
                    if f.startswith(f"{prefix}{i}."):
                        field = f[len(f"{prefix}{i}."):]
                        if field not in fields:
                            raise ApiError("InvalidParameterValue", f"{name}.member.{i}.{field} is not a field of {name}.")
                        item[field] = self.raw[f]
                out.append(item)
        return out

    def finish(self):
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise ApiError("InvalidParameterValue", f"{self.action} does not take the parameter(s) {', '.join(unknown)}.")


def validation_error(name, value, bound, what="length"):
    """AWS's wording for a value outside the model's constraints (the member in camelCase)."""
    member = name[:1].lower() + name[1:]
    return ApiError("ValidationError",
                    f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
                    f"constraint: Member must have {what} {bound}")


# ---------------------------------------------------------------- XML answers


def el(name, value):
    if value is None:
        return ""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def members(name, items):
    return f"<{name}>" + "".join(f"<member>{i}</member>" for i in items) + f"</{name}>"


def answer(action, result_xml):
    rid = str(uuid.uuid4())
    return (
        f'<{action}Response xmlns="{XMLNS}"><{action}Result>{result_xml}</{action}Result>'
        f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{action}Response>"
    )


def error_xml(err):
    kind = "Sender" if err.status < 500 else "Receiver"
    return (
        f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>{kind}</Type><Code>{escape(err.code)}</Code>'
        f"<Message>{escape(err.message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )


# ---------------------------------------------------------------- the fake control plane


class Beanstalk:
    def __init__(self, moto_url):
        cfg = Config(retries={"max_attempts": 1})
        kw = dict(endpoint_url=moto_url, region_name=REGION, config=cfg,
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        self.asg = boto3.client("autoscaling", **kw)
        self.elb = boto3.client("elb", **kw)
        self.s3 = boto3.client("s3", **kw)
        # The solution stacks EB offers (moto keeps AWS's list); a v1 Dockerrun needs a
        # single-container Docker platform, so ECS (multicontainer) stacks are refused too.
        listed = boto3.client("elasticbeanstalk", **kw).list_available_solution_stacks()
        self.stacks = listed["SolutionStacks"]
        self.stack_details = listed["SolutionStackDetails"]
        self.docker_stacks = {s for s in self.stacks if s.endswith("running Docker")}
        self.lock = threading.Lock()
        self.applications = {}  # name -> {created, description}
        self.versions = {}  # (app, label) -> {...}
        self.environments = {}  # id -> {...}

    # -- helpers
    def status(self, env, t=None):
        t = time.time() if t is None else t
        if env["terminated_at"] is not None:
            if t - env["terminated_at"] < TERMINATE_SECS:
                return "Terminating", "Grey"
            return "Terminated", "Grey"
        age = t - env["launched"]
        if age < LAUNCH_SECS or env.get("held"):
            return "Launching", "Grey"
        if age < LAUNCH_SECS + HEALTHY_SECS:
            return "Ready", "Grey"
        # Instances without an instance profile, or a bundle EB cannot run, leave it Red.
        return "Ready", env.get("health_override") or ("Red" if env["launch_error"] else "Green")

    def version_status(self, v, t=None):
        t = time.time() if t is None else t
        if not v["process"]:
            return "UNPROCESSED"
        return "PROCESSING" if t - v["created"] < PROCESS_SECS else "PROCESSED"

    def find_env(self, p, live_only=True):
        env_id = p.opt("EnvironmentId")
        name = p.opt("EnvironmentName", lo=4, hi=40)
        if env_id is None and name is None:
            raise ApiError("MissingRequiredParameter", "You must specify either EnvironmentId or EnvironmentName.")
        for env in self.environments.values():
            if env_id is not None and env["id"] != env_id or name is not None and env["name"] != name:
                continue
            if live_only and self.status(env)[0] == "Terminated":
                continue
            return env
        what = f"EnvironmentId = '{env_id}'" if env_id else f"EnvironmentName = '{name}'"
        raise ApiError("InvalidParameterValue", f"No Environment found for {what}.")

    def env_xml(self, env, inner="member"):
        status, health = self.status(env)
        return (
            f"<{inner}>"
            + el("EnvironmentName", env["name"]) + el("EnvironmentId", env["id"])
            + el("ApplicationName", env["app"]) + el("VersionLabel", env["version"])
            + el("SolutionStackName", env["stack"]) + el("Description", env["description"])
            + el("EndpointURL", env["endpoint"]) + el("CNAME", env["cname"])
            + el("DateCreated", now_iso(env["created"])) + el("DateUpdated", now_iso(self.updated(env)))
            + el("Status", status) + el("AbortableOperationInProgress", False) + el("Health", health)
            + "<Tier>" + el("Name", "WebServer") + el("Type", "Standard") + el("Version", "1.0") + "</Tier>"
            + el("EnvironmentArn", env["arn"])
            + f"</{inner}>"
        )

    def updated(self, env):
        """DateUpdated: the last status change that has happened by now."""
        t = time.time()
        changes = [env["created"], env["launched"] + LAUNCH_SECS]
        if env["terminated_at"] is not None:
            changes += [env["terminated_at"], env["terminated_at"] + TERMINATE_SECS]
        return max(c for c in changes if c <= t)

    # -- operations
    def CreateApplication(self, p):
        name = p.req("ApplicationName", lo=1, hi=100)
        description = p.opt("Description", hi=200)
        tags = p.members("Tags", fields={"Key", "Value"}, limit=50)
        p.unsupported("ResourceLifecycleConfig")
        p.finish()
        check_tags(tags)
        with self.lock:
            if name in self.applications:
                raise ApiError("InvalidParameterValue", f"Application {name} already exists.")
            self.applications[name] = {"created": time.time(), "description": description}
        return app_xml(name, self.applications[name])

    def DescribeApplications(self, p):
        names = p.members("ApplicationNames")
        p.finish()
        with self.lock:
            apps = [(n, a) for n, a in self.applications.items() if not names or n in names]
        return "<Applications>" + "".join(app_xml(n, a, "member") for n, a in apps) + "</Applications>"

    def CreateApplicationVersion(self, p):
        app = p.req("ApplicationName", lo=1, hi=100)
        label = p.req("VersionLabel", lo=1, hi=100)
        description = p.opt("Description", hi=200)
        bucket = p.opt("SourceBundle.S3Bucket", hi=255)
        key = p.opt("SourceBundle.S3Key", hi=1024)
        auto_create = p.boolean("AutoCreateApplication", False)
        process = p.boolean("Process", False)
        tags = p.members("Tags", fields={"Key", "Value"}, limit=50)
        p.unsupported("SourceBuildInformation", "BuildConfiguration")
        p.finish()
        check_tags(tags)
        if (bucket is None) != (key is None):
            raise ApiError("InvalidParameterCombination", "SourceBundle needs both S3Bucket and S3Key.")
        if bucket is not None:
            try:
                self.s3.head_object(Bucket=bucket, Key=key)
            except Exception:
                raise ApiError(
                    "InvalidParameterCombination",
                    f"Unable to download from S3 location (Bucket: {bucket}  Key: {key}). Reason: Not Found",
                )
        with self.lock:
            if app not in self.applications:
                if not auto_create:
                    raise ApiError("InvalidParameterValue", f"No Application named '{app}' found.")
                self.applications[app] = {"created": time.time(), "description": None}
            if (app, label) in self.versions:
                raise ApiError("InvalidParameterValue", f"Application Version {label} already exists.")
            v = {"created": time.time(), "description": description, "bucket": bucket, "key": key,
                 "process": process}
            self.versions[(app, label)] = v
        return self.version_xml(app, label, v, "ApplicationVersion")

    def version_xml(self, app, label, v, inner):
        return (f"<{inner}>" + el("ApplicationName", app) + el("VersionLabel", label)
                + el("ApplicationVersionArn", f"arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:applicationversion/{app}/{label}")
                + el("Description", v["description"]) + el("DateCreated", now_iso(v["created"]))
                + el("DateUpdated", now_iso(v["created"])) + el("Status", self.version_status(v))
                + ("<SourceBundle>" + el("S3Bucket", v["bucket"]) + el("S3Key", v["key"]) + "</SourceBundle>"
                   if v["bucket"] else "")
                + f"</{inner}>")

    def CreateEnvironment(self, p):
        app = p.req("ApplicationName", lo=1, hi=100)
        # Optional in the API (EB then makes one up); the driver always names its environments.
        name = p.req("EnvironmentName", lo=4, hi=40)
        if not NAME_RE.match(name):
            raise ApiError("InvalidParameterValue",
                           f"Value {name} at 'EnvironmentName' failed to satisfy constraint: it can contain only "
                           "letters, numbers and hyphens, and cannot start or end with a hyphen.")
        label = p.opt("VersionLabel", lo=1, hi=100)
        stack = p.opt("SolutionStackName")
        description = p.opt("Description", hi=200)
        cname_prefix = p.opt("CNAMEPrefix", lo=4, hi=63)
        tags = p.members("Tags", fields={"Key", "Value"}, limit=ENVIRONMENT_TAG_LIMIT)
        options = p.members("OptionSettings", fields={"ResourceName", "Namespace", "OptionName", "Value"})
        p.unsupported("PlatformArn", "TemplateName", "Tier", "OptionsToRemove", "GroupName", "OperationsRole")
        p.finish()
        check_tags(tags)
        if stack is None:
            raise ApiError("MissingParameter", "You must specify a SolutionStackName, a PlatformArn or a TemplateName.")
        if stack not in self.docker_stacks:
            raise ApiError("InvalidParameterValue", f"No Solution Stack named '{stack}' found.")
        settings = check_option_settings(options)
        instance_type = settings.get(("aws:autoscaling:launchconfiguration", "InstanceType"), DEFAULT_INSTANCE_TYPE)
        sizes = {}
        for opt, default in (("MinSize", "1"), ("MaxSize", "4")):
            sizes[opt] = int(settings.get(("aws:autoscaling:asg", opt), default))
        if sizes["MinSize"] > sizes["MaxSize"]:
            raise ApiError("ConfigurationValidationException",
                           "Configuration validation exception: MinSize must be less than or equal to MaxSize.")
        with self.lock:
            if app not in self.applications:
                raise ApiError("InvalidParameterValue", f"No Application named '{app}' found.")
            version = self.versions.get((app, label)) if label is not None else None
            if label is not None and version is None:
                raise ApiError("InvalidParameterValue", f"No Application Version named '{label}' found.")
            if version is not None and self.version_status(version) == "PROCESSING":
                raise ApiError("InvalidParameterValue",
                               f"Application version '{label}' is still being processed; it cannot be deployed yet.")
            for env in self.environments.values():
                if env["name"] == name and self.status(env)[0] != "Terminated":
                    raise ApiError("InvalidParameterValue", f"Environment {name} already exists.")
            # Without a prefix EB makes the CNAME unique with a random part; with one, the
            # prefix must be free.
            cname = (f"{cname_prefix}.{REGION}.elasticbeanstalk.com" if cname_prefix
                     else f"{name}.eba-{uuid.uuid4().hex[:8]}.{REGION}.elasticbeanstalk.com")
            for env in self.environments.values():
                if env["cname"] == cname and self.status(env)[0] != "Terminated":
                    raise ApiError("InvalidParameterValue", f"DNS name ({cname}) is not available.")
            env_id = "e-" + uuid.uuid4().hex[:10]
            t = time.time()
            env = {
                "id": env_id, "name": name, "app": app, "version": label, "stack": stack,
                "description": description, "cname": cname, "endpoint": cname, "created": t, "launched": t,
                "terminated_at": None, "tags": {x["Key"]: x["Value"] for x in tags}, "settings": settings,
                "arn": f"arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:environment/{app}/{name}",
                "asg": f"awseb-{env_id}-stack-AWSEBAutoScalingGroup-{uuid.uuid4().hex[:12].upper()}",
                "lb": f"awseb-{env_id}-AWSEBLoa-{uuid.uuid4().hex[:6].upper()}"[:32],
                "lc": f"awseb-{env_id}-stack-AWSEBLaunchConfig",
                "instance_type": instance_type, "sizes": sizes,
                # EB no longer creates a default instance profile: without one named, the
                # instances cannot report and the environment never turns Green.
                "launch_error": None if settings.get(INSTANCE_PROFILE) else "no instance profile",
            }
            # Reserved under the lock, so that a concurrent create of the same name is refused.
            self.environments[env_id] = env
        try:
            if version is not None and version["bucket"] is not None:
                body = self.s3.get_object(Bucket=version["bucket"], Key=version["key"])["Body"].read()
                env["launch_error"] = env["launch_error"] or bundle_error(body)
            self.launch(env)
        except Exception:
            # A launch that failed half way leaves nothing behind, so a retry starts afresh.
            self.remove_resources(env)
            with self.lock:
                del self.environments[env_id]
            raise
        with self.lock:
            env["launched"] = time.time()  # launch timings start once its resources exist
        return self.env_xml(env, inner="__inline__").replace("<__inline__>", "").replace("</__inline__>", "")

    def launch(self, env):
        """What EB's CloudFormation stack would create: a load balancer and a group of instances."""
        sizes = env["sizes"]
        self.elb.create_load_balancer(
            LoadBalancerName=env["lb"],
            Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": 80}],
            AvailabilityZones=[f"{REGION}a"],
        )
        self.asg.create_launch_configuration(
            LaunchConfigurationName=env["lc"], ImageId="ami-12c6146b", InstanceType=env["instance_type"])
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=env["asg"], LaunchConfigurationName=env["lc"],
            MinSize=sizes["MinSize"], MaxSize=sizes["MaxSize"], DesiredCapacity=sizes["MinSize"],
            AvailabilityZones=[f"{REGION}a"], LoadBalancerNames=[env["lb"]],
            Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in system_tags(env).items()],
        )

    def remove_resources(self, env):
        """Deletes what launch() made; what is already gone is fine."""
        for delete in (
            lambda: self.asg.delete_auto_scaling_group(AutoScalingGroupName=env["asg"], ForceDelete=True),
            lambda: self.asg.delete_launch_configuration(LaunchConfigurationName=env["lc"]),
            lambda: self.elb.delete_load_balancer(LoadBalancerName=env["lb"]),
        ):
            try:
                delete()
            except botocore.exceptions.ClientError as e:
                if "NotFound" not in e.response["Error"]["Code"] and "not found" not in str(e).lower():
                    raise

    def rebuild(self, name):
        """RebuildEnvironment, for tests: the same environment id, a new group of new
        instances. The status stays Ready, so a caller can only tell by the group."""
        with self.lock:
            env = next(e for e in self.environments.values()
                       if e["name"] == name and e["terminated_at"] is None)
        self.remove_resources(env)
        suffix = uuid.uuid4().hex[:12].upper()
        env["asg"] = f"awseb-{env['id']}-stack-AWSEBAutoScalingGroup-{suffix}"
        env["lc"] = f"awseb-{env['id']}-stack-AWSEBLaunchConfig-{suffix}"
        self.launch(env)

    def DescribeEnvironments(self, p):
        app = p.opt("ApplicationName", lo=1, hi=100)
        label = p.opt("VersionLabel", lo=1, hi=100)
        ids = p.members("EnvironmentIds")
        names = p.members("EnvironmentNames")
        include_deleted = p.boolean("IncludeDeleted", True)
        back_to = p.opt("IncludedDeletedBackTo")
        max_records = p.integer("MaxRecords", 1, 1000)
        token = p.opt("NextToken")
        p.finish()
        cutoff = None
        if back_to is not None:
            try:
                cutoff = datetime.strptime(back_to.replace("Z", "+00:00").split(".")[0].replace("+00:00", ""),
                                           "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
            except ValueError:
                raise ApiError("InvalidParameterValue", f"Value '{back_to}' at 'IncludedDeletedBackTo' is not a timestamp.")
        query = [app, label, ids, names, include_deleted, back_to, max_records]
        after = page_start(token, query)
        with self.lock:
            found = []
            for env in sorted(self.environments.values(), key=lambda e: (e["created"], e["id"])):
                if after is not None and [env["created"], env["id"]] <= after:
                    continue
                if app is not None and env["app"] != app or label is not None and env["version"] != label:
                    continue
                if ids and env["id"] not in ids or names and env["name"] not in names:
                    continue
                if self.status(env)[0] == "Terminated":
                    if not include_deleted or cutoff is not None and env["terminated_at"] < cutoff:
                        continue
                found.append(env)
            page, token = paged(found, max_records, query, lambda e: [e["created"], e["id"]])
            xml = "<Environments>" + "".join(self.env_xml(e) for e in page) + "</Environments>"
        return xml + el("NextToken", token)

    def DescribeApplicationVersions(self, p):
        app = p.opt("ApplicationName", lo=1, hi=100)
        labels = p.members("VersionLabels")
        max_records = p.integer("MaxRecords", 1, 1000)
        token = p.opt("NextToken")
        p.finish()
        query = [app, labels, max_records]
        after = page_start(token, query)
        with self.lock:
            found = [(key, v) for key, v in sorted(self.versions.items(), key=lambda kv: (kv[1]["created"], kv[0]))
                     if (app is None or key[0] == app) and (not labels or key[1] in labels)
                     and (after is None or [v["created"], list(key)] > after)]
            page, token = paged(found, max_records, query, lambda kv: [kv[1]["created"], list(kv[0])])
            xml = "<ApplicationVersions>" + "".join(self.version_xml(a, l, v, "member") for (a, l), v in page)
        return xml + "</ApplicationVersions>" + el("NextToken", token)

    def DeleteApplicationVersion(self, p):
        app = p.req("ApplicationName", lo=1, hi=100)
        label = p.req("VersionLabel", lo=1, hi=100)
        delete_bundle = p.boolean("DeleteSourceBundle", False)
        p.finish()
        with self.lock:
            version = self.versions.get((app, label))
            if version is None:
                raise ApiError("InvalidParameterValue", f"No Application Version named '{label}' found.")
            users = [e["name"] for e in self.environments.values()
                     if e["app"] == app and e["version"] == label and self.status(e)[0] != "Terminated"]
            if users:
                raise ApiError("InvalidParameterValue",
                               f"Unable to delete application version '{label}' because it is being used by "
                               f"environment(s): {', '.join(users)}.")
            del self.versions[(app, label)]
        if delete_bundle and version["bucket"] is not None:
            try:
                self.s3.delete_object(Bucket=version["bucket"], Key=version["key"])
            except Exception as e:
                raise ApiError("SourceBundleDeletionFailure", f"Unable to delete the source bundle: {e}")
        return ""

    def DescribeEnvironmentResources(self, p):
        with self.lock:
            env = self.find_env(p)
        p.finish()
        instances = []
        if env["terminated_at"] is None:
            groups = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[env["asg"]])["AutoScalingGroups"]
            instances = [i["InstanceId"] for g in groups for i in g["Instances"]]
        return (
            "<EnvironmentResources>" + el("EnvironmentName", env["name"])
            + members("AutoScalingGroups", [el("Name", env["asg"])])
            + members("Instances", [el("Id", i) for i in instances])
            + members("LaunchConfigurations", [el("Name", env["lc"])])
            + "<LaunchTemplates/>"
            + members("LoadBalancers", [el("Name", env["lb"])])
            + "<Triggers/><Queues/></EnvironmentResources>"
        )

    def TerminateEnvironment(self, p):
        terminate_resources = p.boolean("TerminateResources", True)
        p.boolean("ForceTerminate", False)
        with self.lock:
            env = self.find_env(p)
            p.finish()
            status = self.status(env)[0]
            if status != "Ready":
                raise ApiError("InvalidParameterValue",
                               f"Environment named {env['name']} is in an invalid state for this operation. Must be Ready.")
            # Terminating from here on: a second call is refused, as AWS refuses it.
            env["terminated_at"] = time.time()
        if terminate_resources:
            try:
                self.remove_resources(env)
            except Exception:
                with self.lock:
                    env["terminated_at"] = None
                raise
        return self.env_xml(env, inner="__inline__").replace("<__inline__>", "").replace("</__inline__>", "")

    def ListAvailableSolutionStacks(self, p):
        p.finish()
        return (members("SolutionStacks", [escape(s) for s in self.stacks])
                + members("SolutionStackDetails", [
                    el("SolutionStackName", d["SolutionStackName"])
                    + members("PermittedFileTypes", [escape(t) for t in d["PermittedFileTypes"]])
                    for d in self.stack_details]))

    def DescribeConfigurationOptions(self, p):
        # The API also describes an environment's or a template's options, a custom platform's,
        # or only some options; the driver asks for a whole solution stack's, once per stack.
        stack = p.opt("SolutionStackName", hi=100)
        p.unsupported("ApplicationName", "TemplateName", "EnvironmentName", "PlatformArn", "Options")
        p.finish()
        if stack is None:
            raise ApiError("MissingParameter", "You must specify a SolutionStackName.")
        if stack not in self.stacks:
            raise ApiError("InvalidParameterValue", f"No Solution Stack named '{stack}' found.")
        if stack not in self.docker_stacks:
            raise ApiError("InvalidParameterValue",
                           f"DescribeConfigurationOptions: the EB stand-in models only Docker stacks, not '{stack}'.")
        described = []
        for ns, names in sorted(OPTIONS.items()):
            for name, d in sorted(names.items()):
                regex = ("<Regex>" + el("Pattern", d["Regex"][0]) + el("Label", d["Regex"][1]) + "</Regex>"
                         if d["Regex"] else "")
                described.append(
                    el("Namespace", ns) + el("Name", name) + el("DefaultValue", d["DefaultValue"])
                    + el("ChangeSeverity", d["ChangeSeverity"]) + el("UserDefined", False)
                    + el("ValueType", d["ValueType"])
                    + (members("ValueOptions", [escape(v) for v in d["ValueOptions"]]) if d["ValueOptions"] else "")
                    + el("MinValue", d["MinValue"]) + el("MaxValue", d["MaxValue"])
                    + el("MaxLength", d["MaxLength"]) + regex)
        return el("SolutionStackName", stack) + el("PlatformArn", platform_arn(stack)) + members("Options", described)

    def ListTagsForResource(self, p):
        arn = p.req("ResourceArn")
        p.finish()
        with self.lock:
            env = next((e for e in self.environments.values() if e["arn"] == arn), None)
        if env is None:
            raise ApiError("ResourceNotFoundException", f"Resource {arn} not found.")
        tags = {**env["tags"], **system_tags(env)}
        return el("ResourceArn", arn) + members(
            "ResourceTags", [el("Key", k) + el("Value", v) for k, v in sorted(tags.items())])


def page_start(token, query):
    """Where a page starts: a token names the last item of the page before and the query it
    belongs to, so pages stay right while items come and go, and a token from another query
    is refused."""
    if token is None:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        assert data["q"] == json.dumps(query)
        return data["after"]
    except Exception:
        raise ApiError("InvalidParameterValue", f"Invalid NextToken '{token}' for this request.")


def paged(found, max_records, query, position):
    """One page of `found` and the token for the next (None after the last). Without
    MaxRecords everything comes at once, as documented."""
    size = len(found) if max_records is None else min(max_records, PAGE_SIZE)
    page = found[:size]
    if len(found) <= size:
        return page, None
    token = base64.urlsafe_b64encode(json.dumps({"q": json.dumps(query), "after": position(page[-1])}).encode())
    return page, token.decode()


def platform_arn(stack):
    """The platform ARN EB names a solution stack by: "64bit Amazon Linux 2023 v4.6.0 running
    Docker" is platform/Docker running on 64bit Amazon Linux 2023/4.6.0."""
    m = re.fullmatch(r"(.*) v(\d+(?:\.\d+)*) running (.*)", stack)
    if m is None:
        return None
    return f"arn:aws:elasticbeanstalk:{REGION}::platform/{m.group(3)} running on {m.group(1)}/{m.group(2)}"


def system_tags(env):
    """The tags EB puts on an environment and the resources it launches for it."""
    return {"elasticbeanstalk:environment-name": env["name"],
            "elasticbeanstalk:environment-id": env["id"], "Name": env["name"]}


def app_xml(name, app, inner="Application"):
    return (f"<{inner}>" + el("ApplicationName", name) + el("Description", app["description"])
            + el("DateCreated", now_iso(app["created"])) + el("DateUpdated", now_iso(app["created"]))
            + el("ApplicationArn", f"arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:application/{name}")
            + f"</{inner}>")


def bundle_error(body):
    """Why EB could not run a bundle on the Docker platform, or None: a zip (or a bare
    Dockerrun.aws.json) with a valid v1 Dockerrun; a Dockerfile, if present, must start FROM
    the Dockerrun's image."""
    files = {}
    if body[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as z:
                if z.testzip() is not None:
                    return "the source bundle has a bad CRC"
                files = {n: z.read(n) for n in z.namelist()}
        except Exception as e:
            return f"the source bundle is not a readable zip file: {e}"
    else:
        files = {"Dockerrun.aws.json": body}
    try:
        doc = json.loads(files["Dockerrun.aws.json"])
        assert doc.get("AWSEBDockerrunVersion") in ("1", 1) and doc["Image"]["Name"]
    except Exception:
        return "the source bundle has no valid Dockerrun.aws.json (version 1)"
    if "Dockerfile" in files:
        first = files["Dockerfile"].decode(errors="replace").splitlines()[0:1]
        if first != [f"FROM {doc['Image']['Name']}"]:
            return "the Dockerfile does not start FROM the Dockerrun image"
    return None


def check_tags(tags):
    for t in tags:
        key, value = t.get("Key"), t.get("Value")
        if key is None or value is None:
            raise ApiError("InvalidParameterValue", "Every tag needs a Key and a Value.")
        if not 1 <= len(key) <= 128:
            raise validation_error("Tags.member.Key", key, "between 1 and 128")
        if not 1 <= len(value) <= 256:
            raise validation_error("Tags.member.Value", value, "between 1 and 256")
        if key.lower().startswith("aws:") or key.startswith("elasticbeanstalk:"):
            raise ApiError("InvalidParameterValue", f"Tag key '{key}' uses a reserved prefix.")
        if not TAG_RE.match(key) or not TAG_RE.match(value):
            raise ApiError("InvalidParameterValue",
                           f"Tag '{key}' may contain only letters, digits, spaces and _ . : / = + - @.")


def value_problem(description, value):
    """Why `value` breaks an option's description (as DescribeConfigurationOptions gives it), or
    None. MinValue and MaxValue are inclusive (EB's MinSize 1 accepts 1); a Regex must match the
    whole value; a List's items are comma-separated."""
    items = [v.strip() for v in value.split(",")] if description["ValueType"] == "List" else [value]
    if description["ValueOptions"] and value != "":
        bad = [v for v in items if v not in description["ValueOptions"]]
        if bad:
            return f"'{bad[0]}' is not one of the allowed values"
    lo, hi = description["MinValue"], description["MaxValue"]
    if lo is not None or hi is not None:
        if not re.fullmatch(r"-?\d+", value):
            return "must be an integer"
        if lo is not None and int(value) < lo or hi is not None and int(value) > hi:
            return f"must be an integer from {lo} to {hi}"
    if description["MaxLength"] is not None and len(value) > description["MaxLength"]:
        return f"must be at most {description['MaxLength']} characters"
    if description["Regex"] is not None and value != "" and not re.fullmatch(description["Regex"][0], value):
        return f"must be {description['Regex'][1]}"
    return None


def secret_problem(name, value):
    """Why an environment secret is refused, or None: its name must be an environment
    variable's, its value the ARN of a Secrets Manager secret or an SSM parameter."""
    if not ENV_NAME_RE.match(name):
        return "the option name must be an environment variable name"
    if not (SECRET_ARN_RE.match(value) or PARAMETER_ARN_RE.match(value)):
        return "the value must be the ARN of a Secrets Manager secret or a Systems Manager parameter"
    return None


def check_option_settings(options):
    """What EB's configuration validation refuses of the settings the driver sends: what
    DescribeConfigurationOptions does not describe, or a value its description does not allow."""
    settings = {}
    for o in options:
        if "Namespace" not in o or "OptionName" not in o:
            raise ApiError("InvalidParameterValue", "Every OptionSettings member needs a Namespace and an OptionName.")
        ns, name, value = o["Namespace"], o["OptionName"], o.get("Value", "")
        if ns not in OPTIONS or ns not in FREE_FORM and name not in OPTIONS[ns]:
            raise ApiError("ConfigurationValidationException",
                           f"Configuration validation exception: Invalid option specification (Namespace: "
                           f"'{ns}', OptionName: '{name}'): Unknown configuration setting.")
        why = None if ns in FREE_FORM else value_problem(OPTIONS[ns][name], value)
        if ns == SECRETS_NAMESPACE:
            why = secret_problem(name, value)
        if why is not None:
            raise ApiError("ConfigurationValidationException",
                           f"Configuration validation exception: Invalid option value: '{value}' "
                           f"(Namespace: '{ns}', OptionName: '{name}'): {why}")
        settings[(ns, name)] = value
    properties = [f"{name}={value}" for (ns, name), value in settings.items() if ns == ENV_NAMESPACE]
    size = sum(len(p.encode()) for p in properties)
    if size > ENV_PROPERTIES_MAX_BYTES:
        raise ApiError("ConfigurationValidationException",
                       f"Configuration validation exception: environment properties take {size} bytes; "
                       f"their total size cannot exceed {ENV_PROPERTIES_MAX_BYTES} bytes.")
    return settings


OPERATIONS = {
    "CreateApplication", "DescribeApplications", "CreateApplicationVersion", "CreateEnvironment",
    "DescribeApplicationVersions", "DeleteApplicationVersion",
    "DescribeEnvironments", "DescribeEnvironmentResources", "TerminateEnvironment", "ListTagsForResource",
    "ListAvailableSolutionStacks", "DescribeConfigurationOptions",
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    beanstalk = None

    def log_message(self, fmt, *args):
        if os.environ.get("EB_STANDIN_LOG"):
            super().log_message(fmt, *args)

    def reply(self, status, body, content_type="text/xml"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/standin/state":
            with self.beanstalk.lock:
                out = [dict(name=e["name"], id=e["id"], app=e["app"], version=e["version"],
                            status=self.beanstalk.status(e)[0], tags=e["tags"], asg=e["asg"],
                            secrets={name: value for (ns, name), value in e["settings"].items()
                                     if ns == SECRETS_NAMESPACE})
                       for e in self.beanstalk.environments.values()]
            return self.reply(200, json.dumps(out), "application/json")
        self.reply(404, error_xml(ApiError("NotFound", "GET is not part of the query protocol", 404)))

    def do_POST(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        if url.path == "/standin/rebuild":
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            self.beanstalk.rebuild(q.get("environment"))
            return self.reply(200, "{}", "application/json")
        if url.path in ("/standin/health", "/standin/hold"):
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            with self.beanstalk.lock:
                for e in self.beanstalk.environments.values():
                    if e["name"] == q.get("environment"):
                        if url.path == "/standin/health":
                            e["health_override"] = q.get("health")
                        else:
                            e["held"] = q.get("launching") == "true"
                            e["launched"] = time.time() - LAUNCH_SECS
            return self.reply(200, "{}", "application/json")
        raw = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        action = raw.get("Action")
        try:
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("AWS4-HMAC-SHA256 ") or "/elasticbeanstalk/aws4_request" not in auth:
                raise ApiError("MissingAuthenticationToken",
                               "Request is missing a SigV4 Authorization header for elasticbeanstalk.", 403)
            if action is None:
                raise ApiError("MissingAction", "The request must contain the parameter Action")
            if raw.get("Version") != API_VERSION:
                raise ApiError("InvalidParameterValue", f"Version must be {API_VERSION}.")
            if action not in OPERATIONS:
                raise ApiError("InvalidAction", f"The action {action} is not valid for this web service.")
            result = getattr(self.beanstalk, action)(Params(action, raw))
            self.reply(200, answer(action, result))
        except ApiError as e:
            self.reply(e.status, error_xml(e))
        except Exception as e:  # a bug here, or moto refused: say so, as AWS would with a 500
            self.reply(500, error_xml(ApiError("InternalFailure", f"{type(e).__name__}: {e}", 500)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--moto", required=True, help="moto server URL (Auto Scaling, ELB, S3)")
    args = ap.parse_args()
    Handler.beanstalk = Beanstalk(args.moto)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
