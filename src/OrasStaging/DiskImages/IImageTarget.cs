namespace OrasStaging.DiskImages;

/// <summary>
/// Where decoded bytes go. <see cref="Append"/> receives the image in order; every call but the last has a
/// length that is a multiple of <see cref="Qcow2Layout.ClusterSize"/>.
/// </summary>
internal interface IImageTarget : IDisposable
{
    void Append(byte[] buffer, int count);

    /// <summary>Writes the tables or footer, flushes to disk, and returns (virtual size, file size).</summary>
    (long VirtualSize, long FileSize) Finish(long decodedLength, long virtualSize);

    /// <summary>The file a native writer writes, for what a reused partial saved; null for other targets.</summary>
    ImageFile? File => null;
}
