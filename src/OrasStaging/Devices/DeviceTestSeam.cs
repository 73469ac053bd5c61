namespace OrasStaging.Devices;

/// <summary>
/// TEST-ONLY seam, not a user feature: lets a test change a byte on the device between the write and the -Verify
/// read-back, to show that the read-back really reads the device. When the environment variable
/// <c>ORASSTAGING_TEST_VERIFY_GATE</c> names a path, the flash writes <c>&lt;path&gt;.ready</c> (holding the device
/// path) after the final flush and waits, at most two minutes, until <c>&lt;path&gt;.go</c> exists, then verifies.
/// Unset (always, outside tests/Devices.Tests.ps1) it does nothing.
/// </summary>
internal static class DeviceTestSeam
{
    public const string GateVariable = "ORASSTAGING_TEST_VERIFY_GATE";

    public static void BeforeVerify(string nodePath, IOperationSink sink)
    {
        string? gate = Environment.GetEnvironmentVariable(GateVariable);
        if (string.IsNullOrEmpty(gate))
        {
            return;
        }

        sink.Verbose($"Test seam {GateVariable}: waiting for {gate}.go before the read-back.");
        File.WriteAllText(gate + ".ready", nodePath);
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (!File.Exists(gate + ".go") && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(50);
        }
    }
}
