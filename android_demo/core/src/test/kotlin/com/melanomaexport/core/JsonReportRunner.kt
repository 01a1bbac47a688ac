package com.melanomaexport.core

import com.google.gson.GsonBuilder
import com.google.gson.JsonArray
import com.google.gson.JsonObject
import org.junit.runner.Description
import org.junit.runner.JUnitCore
import org.junit.runner.Request
import org.junit.runner.notification.Failure
import org.junit.runner.notification.RunListener
import java.io.File
import kotlin.system.exitProcess

/** Every test class of :core, in the order the report lists them. */
val TEST_CLASSES = listOf(
    ResizeTest::class.java,
    DecodeTest::class.java,
    MetadataTest::class.java,
    SpecTest::class.java,
    GoldenTest::class.java,
    ClassifierTest::class.java,
    ProvenanceTest::class.java,
    AcceleratorTest::class.java
)

/**
 * Runs the JUnit suite and writes one JSON record per test (class, name, status, message), so that pytest can
 * count and show them: `java ... com.melanomaexport.core.JsonReportRunnerKt REPORT.json`.
 * Exits 0 when every test passed, 1 otherwise.
 */
fun main(args: Array<String>) {
    if (args.size != 1) {
        System.err.println("usage: JsonReportRunnerKt REPORT.json")
        exitProcess(2)
    }
    val records = LinkedHashMap<Description, JsonObject>()
    val listener = object : RunListener() {
        override fun testStarted(description: Description) {
            records[description] = record(description, "passed", "")
        }

        override fun testFailure(failure: Failure) {
            records[failure.description] = record(failure.description, "failed", describe(failure))
        }

        override fun testAssumptionFailure(failure: Failure) {
            records[failure.description] = record(failure.description, "skipped", failure.message ?: "")
        }

        override fun testIgnored(description: Description) {
            records[description] = record(description, "skipped", "@Ignore")
        }
    }
    val core = JUnitCore()
    core.addListener(listener)
    val result = core.run(Request.classes(*TEST_CLASSES.toTypedArray()))
    val tests = JsonArray()
    records.values.forEach { tests.add(it) }
    val report = JsonObject()
    report.addProperty("run", result.runCount)
    report.addProperty("failed", result.failureCount)
    report.addProperty("skipped", records.values.count { it.get("status").asString == "skipped" })
    report.add("tests", tests)
    File(args[0]).writeText(GsonBuilder().setPrettyPrinting().create().toJson(report), Charsets.UTF_8)
    println("JUnit: ${result.runCount} run, ${result.failureCount} failed")
    exitProcess(if (result.wasSuccessful()) 0 else 1)
}

private fun record(description: Description, status: String, message: String): JsonObject {
    val o = JsonObject()
    o.addProperty("class", description.testClass?.simpleName ?: description.className)
    o.addProperty("name", description.methodName ?: description.displayName)
    o.addProperty("status", status)
    o.addProperty("message", message)
    return o
}

/** The failure's message plus the first frames of the test code, not the whole JUnit stack. */
private fun describe(failure: Failure): String {
    val e = failure.exception
    val frames = e.stackTrace.filter { it.className.startsWith("com.melanomaexport") }.take(4)
    return "${e.javaClass.simpleName}: ${e.message}" + frames.joinToString("") { "\n    at $it" }
}
