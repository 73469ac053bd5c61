using System.Diagnostics;
using OrasStaging.Devices;
using OrasStaging.DiskImages;

namespace OrasStaging.Staging;

/// <summary>What the device route resolved and checked before the user is asked.</summary>
internal sealed record DeviceInstallPlan(InstallRequest Request, BlockDevice Device, ResolvedLayer Layer)
{
    /// <summary>For -WhatIf and the prompt: what would be written where, and what is on the device now.</summary>
    public string Description =>
        $"Write {Units.ShortDigest(Layer.Digest)} ({Units.Bytes(Layer.Size)} compressed"
        + (Layer.DeclaredImageSize is { } s ? $", {Units.Bytes(s)} image" : string.Empty)
        + $", {Layer.Title ?? Layer.MediaType}) from {Layer.Registry}/{Layer.Repository} as raw onto {Device.Summary}. "
        + "Everything on the device up to the image's end is overwritten.";
}

/// <summary>
/// Install-DiskImageFromOras onto a block device: resolve, refuse what must be refused, then the same one pass as
/// for files (<see cref="OnePassWrite"/>: the verified, resumable blob through the decoder) into the device at
/// increasing offsets, as raw. A dropped connection resumes inside the blob stream (Range), so the device is
/// written on at the offset it had reached. No skip by digest (a device has no stamp), no lock, partial, stamp or
/// receipt: the exclusive open of the device is the lock.
/// </summary>
internal sealed class DeviceInstallFlow
{
    private readonly IStagingSource _source;
    private readonly IOperationSink _sink;

    public DeviceInstallFlow(IStagingSource source, IOperationSink sink)
    {
        _source = source;
        _sink = sink;
    }

    /// <summary>Describes the device, refuses one in use, resolves the layer and refuses an image declared larger than the device.</summary>
    public async Task<DeviceInstallPlan> PlanAsync(InstallRequest request, CancellationToken cancellationToken)
    {
        var device = DeviceFlash.Prepare(request.Path, knownImageLength: null);
        _sink.Progress(new ProgressInfo($"Resolving {request.Reference}", "Resolve", 0, null));
        var layer = await _source.ResolveAsync(cancellationToken).ConfigureAwait(false);
        _sink.Verbose($"Resolved {request.Reference} to layer {layer.Digest} ({Units.Bytes(layer.Size)}); target {device.Summary}.");
        if (layer.DeclaredImageSize is { } declared)
        {
            DeviceSafety.ThrowIfTooSmall(device, declared);
        }

        return new DeviceInstallPlan(request, device, layer);
    }

    public async Task<StagedImage> RunAsync(DeviceInstallPlan plan, bool verify, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var (request, device, layer) = (plan.Request, plan.Device, plan.Layer);
        var cache = request.KeepBlob is { } keep ? new BlobCache(keep) : null;
        bool fromCache = cache is not null && cache.Contains(layer.Digest);
        var result = await DeviceFlash.RunAsync(device, layer.DeclaredImageSize, verify, async writer =>
        {
            var target = new DeviceStagingWriter(writer, verify, layer.MemberPath);
            await new OnePassWrite(_source, target, _sink)
                .WriteAsync(layer, cache, fromCache, device.NodePath, cancellationToken).ConfigureAwait(false);
            return target.Result!;
        }, _sink, cancellationToken).ConfigureAwait(false);

        return StagedImage.Staged(request, layer, DiskImageFormat.Raw, result.Length, result.Length, clock.Elapsed);
    }

    /// <summary>The staging writer shape over an open device: OnePassWrite's output path is the device node.</summary>
    private sealed class DeviceStagingWriter(DeviceWriter writer, bool hash, string? tarMember) : IStagingWriter
    {
        public DeviceWriteResult? Result { get; private set; }

        public DiskImageFormat Format => DiskImageFormat.Raw;

        /// <summary>
        /// Set by OnePassWrite from the artifact's declared image size: the plan refused a device smaller than it,
        /// and a stream that decodes past it is CorruptInput at once (the device's own end bounds an undeclared one).
        /// </summary>
        public long? DeclaredDecodedBytes { get; set; }

        /// <summary>A device is written whole by DeviceFlash; there is no partial to reuse.</summary>
        public bool ReuseOutput { get; set; }

        public async Task<WrittenImage> WriteAsync(Stream input, long? inputLength, string outputPath, IOperationSink sink,
            CancellationToken cancellationToken)
        {
            Result = await DeviceImageWriter.WriteStreamAsync(input, inputLength, writer, hash, Path.GetTempPath(), sink, cancellationToken,
                DeclaredDecodedBytes, tarMember).ConfigureAwait(false);
            return new WrittenImage(DiskImageFormat.Raw, Result.Length, Result.Length, Result.InputBytes);
        }
    }
}
