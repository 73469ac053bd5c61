using System.Management.Automation;
using OrasStaging.Devices;
using OrasStaging.DiskImages;
using OrasStaging.Oci;
using OrasStaging.Staging;

namespace OrasStaging.Commands;

/// <summary>Install-DiskImageFromOras onto a block device (-Path /dev/sdX): see Staging/DeviceInstallFlow.</summary>
public sealed partial class InstallDiskImageFromOrasCommand
{
    /// <summary>After writing onto a block device, read the image back and compare its hash with the decoded stream's.</summary>
    [Parameter]
    public SwitchParameter Verify { get; set; }

    /// <summary>\\.\PhysicalDriveN (and other \\.\ device names) as given: not a path for the file system provider.</summary>
    internal static string? DevicePath(string path) =>
        OperatingSystem.IsWindows() && path.StartsWith(@"\\.\", StringComparison.Ordinal) ? path : null;

    private void StageOntoDevice(string name, string reference, ImageReference parsed, string devicePath, int parentActivityId)
    {
        if (Format is { } format && format != DiskImageFormat.Raw)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"Only raw goes onto a block device; -Format {format.Name()} was given for {devicePath}. Nothing was written.",
                "Drop -Format (a qcow2 or VHD in the artifact is decoded and written as raw).");
        }

        if (GrowBy != 0 || Size is not null)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"-GrowBy and -Size do not apply to a block device: {devicePath} is as large as it is. Nothing was written.",
                "Drop -GrowBy and -Size; grow the partitions on the disk after writing it.");
        }

        var request = new InstallRequest
        {
            Name = name,
            Reference = reference,
            PinnedDigest = parsed.Digest,
            Path = devicePath,
            Force = Force,
            KeepBlob = KeepBlob is null ? null : ResolveOutputPath(KeepBlob),
        };
        var registryOptions = NewRegistryOptions(CacheServer);
        registryOptions.ConnectionLimit = ConnectionLimit;

        // One source for the plan and the run (the run streams the layer the plan resolved); each RunBlocking
        // pumps its own sink, so the flow talks to whichever is current.
        var relay = new RelaySink();
        var flow = new DeviceInstallFlow(new RegistryStagingSource(registryOptions, parsed, NewResolveOptions(), relay), relay);
        var plan = RunBlocking((sink, ct) => flow.PlanAsync(request, relay.To(sink, ct)), ImageActivityId, parentActivityId);
        if (!DeviceConfirmation.Confirm(this, Force, plan.Description, devicePath, "Install-DiskImageFromOras onto a block device"))
        {
            return;
        }

        var result = RunBlocking((sink, ct) => flow.RunAsync(plan, Verify, relay.To(sink, ct)), ImageActivityId, parentActivityId);
        WriteObject(result);
    }

    private sealed class RelaySink : IOperationSink
    {
        private volatile IOperationSink _target = NullOperationSink.Instance;

        /// <summary>Sends what follows to <paramref name="sink"/>; returns <paramref name="ct"/> for use inline.</summary>
        public CancellationToken To(IOperationSink sink, CancellationToken ct)
        {
            _target = sink;
            return ct;
        }

        public void Progress(ProgressInfo info) => _target.Progress(info);

        public void Verbose(string message) => _target.Verbose(message);

        public void Warning(string message) => _target.Warning(message);
    }
}
